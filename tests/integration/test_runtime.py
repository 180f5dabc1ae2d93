"""`rootbox-runtime`: the OCI runtime command line (runc-compatible verbs and flags)."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from util import alive, run, wait_until

SLEEP = ["sleep", "60"]


def state(runtime, cid):
    r = runtime("state", cid)
    assert r.rc == 0, r
    try:
        return json.loads(r.out)
    except ValueError:
        raise AssertionError(f"state is not JSON:{r}")


def wait_status(runtime, cid, status, timeout=10):
    def check():
        r = runtime("state", cid)
        return r.rc == 0 and json.loads(r.out)["status"] == status

    wait_until(check, timeout, what=f"container {cid} to be {status}")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def running(runtime, make_bundle, cid="c1", args=SLEEP, edit=None):
    b = make_bundle(args, edit=edit)
    r = runtime("create", "--bundle", b, cid)
    assert r.rc == 0, r
    r = runtime("start", cid)
    assert r.rc == 0, r
    return b, state(runtime, cid)


# --- the lifecycle ---------------------------------------------------------------


def test_lifecycle(runtime, make_bundle):
    b = make_bundle(SLEEP)
    r = runtime("create", "--bundle", b, "c1")
    assert r.rc == 0, r

    st = state(runtime, "c1")
    assert st["ociVersion"].startswith("1."), st
    assert st["id"] == "c1"
    assert st["status"] == "created"
    pid = st["pid"]
    assert isinstance(pid, int) and pid > 0
    assert os.path.realpath(st["bundle"]) == os.path.realpath(b)
    assert alive(pid), "the container process must exist after create"
    # The user's program must not run before start.
    assert cmdline(pid)[:1] != [b"sleep"], cmdline(pid)

    r = runtime("start", "c1")
    assert r.rc == 0, r
    st = state(runtime, "c1")
    assert st["status"] == "running", st
    assert st["pid"] == pid
    wait_until(lambda: cmdline(pid)[:1] == [b"sleep"], what="the container to exec its program")

    r = runtime("kill", "c1", "KILL")
    assert r.rc == 0, r
    wait_status(runtime, "c1", "stopped")

    r = runtime("delete", "c1")
    assert r.rc == 0, r
    r = runtime("state", "c1")
    assert r.rc != 0, r
    assert "c1" in r.err, r
    wait_until(lambda: not alive(pid), what="the container process to be gone")


def test_container_that_exits_becomes_stopped(runtime, make_bundle):
    running(runtime, make_bundle, "c1", ["true"])
    wait_status(runtime, "c1", "stopped")
    r = runtime("delete", "c1")
    assert r.rc == 0, r


def test_kill_default_signal_is_term(runtime, make_bundle):
    running(runtime, make_bundle, "c1", ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 0.1; done'])
    time.sleep(0.2)  # let sh install its trap
    r = runtime("kill", "c1")
    assert r.rc == 0, r
    wait_status(runtime, "c1", "stopped")


def test_kill_stopped_container_fails(runtime, make_bundle):
    running(runtime, make_bundle, "c1", ["true"])
    wait_status(runtime, "c1", "stopped")
    r = runtime("kill", "c1", "KILL")
    assert r.rc != 0, r


# --- errors the spec requires --------------------------------------------------------


def test_state_unknown_id(runtime):
    r = runtime("state", "nosuch")
    assert r.rc != 0, r
    assert "nosuch" in r.err, r


@pytest.mark.parametrize("verb", [["start"], ["kill"], ["delete"], ["ps"], ["exec"], ["pause"], ["resume"]])
def test_unknown_id_errors(runtime, verb):
    args = verb + ["nosuch"] + (["true"] if verb == ["exec"] else [])
    r = runtime(*args)
    assert r.rc != 0, r
    assert "nosuch" in r.err, r


def test_create_duplicate_id(runtime, make_bundle):
    b = make_bundle(SLEEP)
    assert runtime("create", "--bundle", b, "c1").rc == 0
    r = runtime("create", "--bundle", make_bundle(SLEEP), "c1")
    assert r.rc != 0, r
    assert "already exists" in r.err.lower(), r
    assert state(runtime, "c1")["status"] == "created"


def test_concurrent_create_same_id(bins, state_root, make_bundle):
    bundles = [make_bundle(SLEEP) for _ in range(4)]
    procs = [
        subprocess.Popen(
            [bins.runtime, "--root", state_root, "create", "--bundle", b, "same"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for b in bundles
    ]
    rcs = [p.wait(timeout=30) for p in procs]
    for p in procs:
        p.stderr.close()
    assert rcs.count(0) == 1, rcs


def test_start_twice(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    r = runtime("start", "c1")
    assert r.rc != 0, r


def test_delete_running_needs_force(runtime, make_bundle):
    _, st = running(runtime, make_bundle, "c1")
    r = runtime("delete", "c1")
    assert r.rc != 0, r
    assert state(runtime, "c1")["status"] == "running"
    r = runtime("delete", "--force", "c1")
    assert r.rc == 0, r
    assert runtime("state", "c1").rc != 0
    wait_until(lambda: not alive(st["pid"]), what="delete --force to kill the container")


def test_delete_force_created(runtime, make_bundle):
    assert runtime("create", "--bundle", make_bundle(SLEEP), "c1").rc == 0
    pid = state(runtime, "c1")["pid"]
    r = runtime("delete", "--force", "c1")
    assert r.rc == 0, r
    wait_until(lambda: not alive(pid), what="the created container to be killed")


def test_create_bad_bundle(runtime, tmp_path):
    missing = tmp_path / "nobundle"
    r = runtime("create", "--bundle", missing, "c1")
    assert r.rc != 0, r
    assert "nobundle" in r.err or "config.json" in r.err, r
    assert runtime("state", "c1").rc != 0, "a failed create left state behind"


def test_create_malformed_config(runtime, make_bundle):
    b = make_bundle()
    (b / "config.json").write_text("{ not json")
    r = runtime("create", "--bundle", b, "c1")
    assert r.rc != 0, r
    assert "config" in r.err.lower(), r
    assert runtime("state", "c1").rc != 0, "a failed create left state behind"


def test_missing_executable(runtime, make_bundle):
    b = make_bundle(["nope"])
    r = runtime("create", "--bundle", b, "c1")
    if r.rc == 0:  # runtimes may report it at start instead
        r = runtime("start", "c1")
    assert r.rc != 0, r
    assert "nope" in r.err, r


# --- run -----------------------------------------------------------------------------


def test_run_exit_code_and_stdio(runtime, make_bundle):
    b = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    r = runtime("run", "--bundle", b, "r1")
    assert r.rc == 3, r
    assert r.out == "out\n", r
    assert "err" in r.err, r
    assert runtime("state", "r1").rc != 0, "run must delete the container when it exits"


def test_run_signal_exit_code(runtime, make_bundle):
    # PID 1 kills itself with a signal it has no handler for from inside: ignored by
    # the kernel; so the process killed here is a child whose status sh returns.
    b = make_bundle(["sh", "-c", "sh -c 'kill -KILL $$'; exit $?"])
    r = runtime("run", "--bundle", b, "r1")
    assert r.rc == 128 + 9, r


def test_run_detach(runtime, make_bundle):
    b = make_bundle(SLEEP)
    r = runtime("run", "--detach", "--bundle", b, "d1", timeout=15)
    assert r.rc == 0, r
    assert state(runtime, "d1")["status"] == "running"
    assert runtime("delete", "--force", "d1").rc == 0


def test_pid_file(runtime, make_bundle, tmp_path):
    pidfile = tmp_path / "c1.pid"
    r = runtime("create", "--bundle", make_bundle(SLEEP), "--pid-file", pidfile, "c1")
    assert r.rc == 0, r
    assert int(pidfile.read_text().strip()) == state(runtime, "c1")["pid"]


def test_options_after_id(runtime, make_bundle):
    b = make_bundle(SLEEP)
    r = runtime("create", "c1", "--bundle", b)
    assert r.rc == 0, r
    assert runtime("start", "c1").rc == 0
    r = runtime("delete", "c1", "--force")
    assert r.rc == 0, r
    assert runtime("state", "c1").rc != 0


def test_preserve_fds(bins, state_root, make_bundle, tmp_path):
    marker = tmp_path / "marker"
    marker.write_text("preserved\n")
    b = make_bundle(["sh", "-c", "cat <&3; ls /proc/self/fd"])
    r = run(
        ["sh", "-c", f'exec 3<{marker} 5<{marker}; exec "$@"', "sh",
         bins.runtime, "--root", state_root, "run", "--preserve-fds", "1", "--bundle", b, "p1"]
    )
    assert r.rc == 0, r
    assert r.lines[0] == "preserved", r
    fds = set(r.lines[1:])
    assert "3" in fds and "5" not in fds, r
    assert fds <= {"0", "1", "2", "3", "4"}, f"leaked fds:{r}"


def test_inherited_fds_closed(bins, state_root, make_bundle):
    b = make_bundle(["ls", "/proc/self/fd"])
    r = run(
        ["sh", "-c", 'exec 5</etc/hostname 7</etc/passwd; exec "$@"', "sh",
         bins.runtime, "--root", state_root, "run", "--bundle", b, "f1"]
    )
    assert r.rc == 0, r
    fds = set(r.out.split())
    assert {"0", "1", "2"} <= fds <= {"0", "1", "2", "3"}, f"leaked fds:{r}"


# --- list / ps / spec / features -------------------------------------------------------


def test_list(runtime, make_bundle):
    assert runtime("create", "--bundle", make_bundle(SLEEP), "a1").rc == 0
    assert runtime("create", "--bundle", make_bundle(SLEEP), "b2").rc == 0
    r = runtime("list")
    assert r.rc == 0, r
    assert "a1" in r.out and "b2" in r.out, r
    r = runtime("list", "--quiet")
    assert r.rc == 0 and sorted(r.out.split()) == ["a1", "b2"], r
    r = runtime("list", "--format", "json")
    assert r.rc == 0, r
    entries = json.loads(r.out)
    assert sorted(e["id"] for e in entries) == ["a1", "b2"], r
    assert {e["status"] for e in entries} == {"created"}, r
    assert all(e["pid"] > 0 for e in entries), r


def test_list_empty(runtime):
    r = runtime("list", "--format", "json")
    assert r.rc == 0, r
    assert json.loads(r.out) in ([], None), r
    r = runtime("list", "--quiet")
    assert r.rc == 0 and r.out.strip() == "", r


def test_ps(runtime, make_bundle):
    _, st = running(runtime, make_bundle, "c1")
    r = runtime("ps", "--format", "json", "c1")
    assert r.rc == 0, r
    pids = json.loads(r.out)
    assert st["pid"] in pids, r
    r = runtime("ps", "c1")
    assert r.rc == 0, r
    assert str(st["pid"]) in r.out.split(), r


def test_spec_rootless(bins, tmp_path):
    r = run([bins.runtime, "spec", "--rootless", "--bundle", tmp_path])
    assert r.rc == 0, r
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["ociVersion"].startswith("1."), cfg
    assert cfg["root"]["path"] == "rootfs"
    assert cfg["process"]["args"], cfg
    ns = {n["type"] for n in cfg["linux"]["namespaces"]}
    assert {"user", "mount", "pid"} <= ns, ns
    assert cfg["linux"]["uidMappings"][0]["hostID"] == os.getuid()
    assert cfg["linux"]["uidMappings"][0]["containerID"] == 0
    # Never overwrites an existing config.
    r = run([bins.runtime, "spec", "--rootless", "--bundle", tmp_path])
    assert r.rc != 0, r


def test_spec_defaults_to_cwd(bins, tmp_path):
    r = run([bins.runtime, "spec", "--rootless"], cwd=tmp_path)
    assert r.rc == 0, r
    assert (tmp_path / "config.json").exists()


def test_features(bins):
    r = run([bins.runtime, "features"])
    assert r.rc == 0, r
    f = json.loads(r.out)
    assert f["ociVersionMin"].startswith("1.") and f["ociVersionMax"].startswith("1."), f
    assert "user" in f["linux"]["namespaces"], f


# --- exec --------------------------------------------------------------------------------


def test_exec_args(runtime, make_bundle):
    def edit(cfg):
        cfg["hostname"] = "ctr1"

    running(runtime, make_bundle, "c1", edit=edit)
    r = runtime("exec", "c1", "--", "sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.rc == 0, r
    pid, host, pid1 = r.lines
    assert pid != "1"
    assert host == "ctr1"
    assert pid1.split()[0] == "sleep", r


def test_exec_without_dashdash(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    r = runtime("exec", "c1", "echo", "hi")
    assert r.rc == 0 and r.out == "hi\n", r


def test_exec_joins_all_namespaces(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    script = (
        "for n in mnt pid net uts ipc user cgroup; do "
        '[ "$(readlink /proc/1/ns/$n)" = "$(readlink /proc/self/ns/$n)" ] || echo DIFF $n; done; echo done'
    )
    r = runtime("exec", "c1", "--", "sh", "-c", script)
    assert r.rc == 0, r
    assert r.out == "done\n", r


def test_exec_exit_code(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    r = runtime("exec", "c1", "--", "sh", "-c", "exit 4")
    assert r.rc == 4, r


def test_exec_env_and_cwd(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    r = runtime("exec", "--env", "FOO=baz", "--cwd", "/tmp", "c1", "--", "sh", "-c", 'echo "$FOO"; pwd')
    assert r.rc == 0, r
    assert r.lines == ["baz", "/tmp"], r


def test_exec_process_json(runtime, make_bundle, tmp_path):
    running(runtime, make_bundle, "c1")
    proc = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", 'echo "fromjson $FOO"; pwd'],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"],
        "cwd": "/tmp",
    }
    p = tmp_path / "process.json"
    p.write_text(json.dumps(proc))
    r = runtime("exec", "--process", p, "c1")
    assert r.rc == 0, r
    assert r.lines == ["fromjson bar", "/tmp"], r


def test_exec_stopped_container_fails(runtime, make_bundle):
    running(runtime, make_bundle, "c1", ["true"])
    wait_status(runtime, "c1", "stopped")
    r = runtime("exec", "c1", "--", "true")
    assert r.rc != 0, r


# --- terminal over --console-socket --------------------------------------------------------


def test_console_socket(runtime, make_bundle, state_root):
    def edit(cfg):
        cfg["process"]["terminal"] = True

    b = make_bundle(["sh", "-c", "tty; echo console-ok"], edit=edit)
    path = str(state_root / "cs.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(15)
    master = None
    try:
        r = runtime("create", "--console-socket", path, "--bundle", b, "t1")
        assert r.rc == 0, r
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(15)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        assert len(fds) == 1, "expected the pty master over the console socket"
        master = fds[0]
        assert runtime("start", "t1").rc == 0
        out = b""
        deadline = time.monotonic() + 15
        while b"console-ok" not in out and time.monotonic() < deadline:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        assert b"/dev/pts/" in out and b"console-ok" in out, out
    finally:
        srv.close()
        if master is not None:
            os.close(master)


def test_terminal_without_console_socket_fails(runtime, make_bundle):
    def edit(cfg):
        cfg["process"]["terminal"] = True

    r = runtime("create", "--bundle", make_bundle(SLEEP, edit=edit), "t1")
    assert r.rc != 0, r
    assert "console" in r.err.lower(), r


# --- hooks ------------------------------------------------------------------------------------


def test_hooks(runtime, make_bundle, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()

    def host_hook(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{name}.json"]}

    def edit(cfg):
        cfg["hooks"] = {
            "createRuntime": [host_hook("createRuntime")],
            "poststart": [host_hook("poststart")],
            "poststop": [host_hook("poststop")],
            # path resolved and run in the container: busybox sh, writes into the rootfs
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /startContainer.json"]}],
        }

    b = make_bundle(SLEEP, edit=edit)
    assert runtime("create", "--bundle", b, "h1").rc == 0
    st = json.loads((out / "createRuntime.json").read_text())
    assert st["id"] == "h1" and st["pid"] > 0, st
    assert not (out / "poststart.json").exists()

    assert runtime("start", "h1").rc == 0
    wait_until(lambda: (out / "poststart.json").exists(), what="the poststart hook")
    assert json.loads((out / "poststart.json").read_text())["id"] == "h1"
    assert json.loads((b / "rootfs" / "startContainer.json").read_text())["id"] == "h1"
    assert not (out / "poststop.json").exists()

    assert runtime("delete", "--force", "h1").rc == 0
    assert json.loads((out / "poststop.json").read_text())["id"] == "h1"


def test_failing_create_hook_fails_create(runtime, make_bundle):
    def edit(cfg):
        cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]}

    r = runtime("create", "--bundle", make_bundle(SLEEP, edit=edit), "h1")
    assert r.rc != 0, r
    assert runtime("state", "h1").rc != 0, "a failed create left state behind"


# --- global flags, state directory -------------------------------------------------------------


def test_global_flags_accepted(runtime, tmp_path):
    log = tmp_path / "runtime.log"
    r = runtime("--log", log, "--log-format", "json", "--debug", "--systemd-cgroup", "list")
    assert r.rc == 0, r
    r = runtime("--log", log, "--log-format", "json", "state", "nosuch")
    assert r.rc != 0, r
    # Engines (containerd, podman) read errors from the log file.
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, "nothing logged"
    for line in lines:
        json.loads(line)
    assert any("nosuch" in line for line in lines), lines


def test_default_root_under_xdg_runtime_dir(bins, make_bundle, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": xdg}
    r = run([bins.runtime, "create", "--bundle", make_bundle(SLEEP), "x1"], env=env)
    try:
        assert r.rc == 0, r
        root = xdg / "rootbox-runtime"
        assert root.is_dir(), list(xdg.iterdir())
        assert os.stat(root).st_mode & 0o777 == 0o700
        assert "x1" in " ".join(os.listdir(root))
        r = run([bins.runtime, "list", "--quiet"], env=env)
        assert r.out.split() == ["x1"], r
    finally:
        run([bins.runtime, "delete", "--force", "x1"], env=env)


def test_pause_resume(runtime, make_bundle):
    running(runtime, make_bundle, "c1")
    r = runtime("pause", "c1")
    if r.rc != 0:
        # Without a delegated cgroup (this host's hybrid hierarchy) pausing is
        # impossible: the error must say why.
        assert "cgroup" in r.err.lower() or "freez" in r.err.lower(), r
        assert state(runtime, "c1")["status"] == "running"
        return
    assert state(runtime, "c1")["status"] == "paused"
    r = runtime("resume", "c1")
    assert r.rc == 0, r
    assert state(runtime, "c1")["status"] == "running"


def test_run_forwards_signals(bins, state_root, make_bundle, background):
    b = make_bundle(["sh", "-c", 'trap "echo got; exit 3" TERM; echo ready; while :; do sleep 0.1; done'])
    bg = background([bins.runtime, "--root", state_root, "run", "--bundle", b, "s1"])
    bg.wait_for("ready")
    bg.signal(signal.SIGTERM)
    r = bg.finish(timeout=10)
    assert r.rc == 3 and "got" in r.out, r


def test_runc_spec_capabilities(runtime, make_bundle):
    """The capability sets `runc spec --rootless` (and so many engines) write: an
    ambient set without an inheritable one. runc and crun run it; so must we."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

    def edit(cfg):
        cfg["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")}

    b = make_bundle(["cat", "/proc/self/status"], edit=edit)
    r = runtime("run", "--bundle", b, "caps1")
    assert r.rc == 0, r
    fields = dict(line.split(":", 1) for line in r.lines if ":" in line)
    # AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10)
    assert int(fields["CapEff"].strip(), 16) == (1 << 29) | (1 << 5) | (1 << 10), r


def test_time_namespace_offsets(runtime, make_bundle):
    """A config asking for a time namespace with offsets: the container's
    boottime and monotonic clocks are shifted, the host's are not."""
    days = 10 * 86400

    def edit(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {
            "boottime": {"secs": days, "nanosecs": 0},
            "monotonic": {"secs": days, "nanosecs": 0},
        }

    b = make_bundle(["cat", "/proc/uptime"], edit=edit)
    with open("/proc/uptime") as f:
        host_up = float(f.read().split()[0])
    r = runtime("run", "--bundle", b, "t1")
    assert r.rc == 0, r
    inside = float(r.out.split()[0])
    assert days + host_up - 5 < inside < days + host_up + 60, (host_up, inside, r)


def test_time_offsets_without_time_namespace_rejected(runtime, make_bundle):
    def edit(cfg):
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 5, "nanosecs": 0}}

    b = make_bundle(["true"], edit=edit)
    r = runtime("run", "--bundle", b, "t2")
    assert r.rc != 0, r
    assert "time" in r.err.lower(), r
