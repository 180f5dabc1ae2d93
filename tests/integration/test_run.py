"""`rootbox run --rootfs DIR`: isolation, process, stdio, exit codes, signals, mounts."""

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import time

import pytest

from util import IS_ROOT, alive, parse_mountinfo, run, wait_until

# Docker's default capability set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW
# SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
DOCKER_DEFAULT_CAPS = 0x00000000A80425FB


# --- identity: PID 1, uid 0, namespaces -------------------------------------


def test_pid1_and_uid0(box):
    r = box("sh", "-c", "echo $$; id -u; id -g")
    assert r.rc == 0, r
    assert r.lines == ["1", "0", "0"], r


def test_namespaces_are_new(box):
    """mount, pid, uts, ipc, net and cgroup namespaces differ from the host's
    (and the user namespace too for an unprivileged caller)."""
    names = ["mnt", "pid", "uts", "ipc", "net", "cgroup"]
    if not IS_ROOT:
        names.append("user")
    r = box("sh", "-c", "for n in %s; do echo $n $(readlink /proc/self/ns/$n); done" % " ".join(names))
    assert r.rc == 0, r
    inside = dict(line.split(None, 1) for line in r.lines)
    for n in names:
        assert inside.get(n), f"no {n} namespace link inside:{r}"
        assert inside[n] != os.readlink(f"/proc/self/ns/{n}"), f"{n} namespace is the host's:{r}"


def test_hostname_option(box):
    r = box("sh", "-c", "hostname; cat /proc/sys/kernel/hostname", opts=["--hostname", "box1"])
    assert r.rc == 0, r
    assert r.lines == ["box1", "box1"], r


def test_hostname_default_is_set(box):
    r = box("hostname")
    assert r.rc == 0, r
    name = r.out.strip()
    assert name, f"empty default hostname:{r}"
    assert name != socket.gethostname(), f"the container sees the host's hostname:{r}"


def test_no_host_processes_visible(box):
    r = box("sh", "-c", "ls /proc; echo ---; ps -o pid,comm; true")
    assert r.rc == 0, r
    ls_part, ps_part = r.out.split("---\n", 1)
    pids = sorted(int(x) for x in ls_part.split() if x.isdigit())
    # sh (1) and ls itself: nothing of the host's hundreds of processes.
    assert 1 in pids and len(pids) <= 3 and max(pids) < 10, r
    rows = [line.split(None, 1) for line in ps_part.strip().splitlines()[1:]]
    procs = {int(pid): comm.strip() for pid, comm in rows}
    assert procs.get(1) == "sh", r
    others = {comm for pid, comm in procs.items() if pid != 1}
    assert others == {"ps"}, f"ps should list only pid 1 and itself:{r}"


def test_network_has_only_lo(box):
    r = box("sh", "-c", "ls /sys/class/net; echo ---; cat /proc/net/dev", opts=["--network", "none"])
    assert r.rc == 0, r
    sys_part, dev_part = r.out.split("---\n", 1)
    assert sys_part.split() == ["lo"], r
    # /proc/net/dev: two header lines, then "  lo: ..."
    ifaces = [line.split(":", 1)[0].strip() for line in dev_part.splitlines()[2:] if ":" in line]
    assert ifaces == ["lo"], r


def test_loopback_is_usable(box):
    r = box("ip", "-o", "link", "show", opts=["--network", "none"])
    assert r.rc == 0, r
    assert len(r.lines) == 1 and ": lo:" in r.lines[0], r


# --- mounts ------------------------------------------------------------------


def test_mounts_invisible_to_host(box_args, background, rootfs, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    b = background(
        box_args(
            "sh",
            "-c",
            "cat /proc/self/mountinfo; echo ready; exec sleep 60",
            opts=["--tmpfs", "/mnt/rbmark", "-v", f"{vol}:/rbvol"],
        )
    )
    b.wait_for("ready")
    inside = parse_mountinfo(b.out.split("ready")[0])
    inside_points = {m["mountpoint"] for m in inside}
    assert "/mnt/rbmark" in inside_points and "/rbvol" in inside_points, b.out
    with open("/proc/self/mountinfo") as f:
        host = parse_mountinfo(f.read())
    host_points = {m["mountpoint"] for m in host}
    assert "/mnt/rbmark" not in host_points
    assert "/rbvol" not in host_points
    leaked = [p for p in host_points if p == str(rootfs) or p.startswith(str(rootfs) + "/")]
    assert not leaked, f"container mounts visible on the host: {leaked}"
    # The container sees its own mount table, not the host's.
    assert len(inside) < len(host) or {m["mountpoint"] for m in host} != inside_points


def test_tmpfs_option(box):
    r = box("sh", "-c", "echo x > /mnt/t/f && cat /mnt/t/f && cat /proc/self/mountinfo", opts=["--tmpfs", "/mnt/t"])
    assert r.rc == 0, r
    assert r.lines[0] == "x", r
    m = [m for m in parse_mountinfo(r.out) if m["mountpoint"] == "/mnt/t"]
    assert m and m[-1]["fstype"] == "tmpfs", r


def _host_proc_exists(name):
    return os.path.exists(f"/proc/{name}")


MASKED = ["kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats", "acpi", "scsi"]
READONLY = ["sys", "sysrq-trigger", "irq", "bus", "fs"]


def test_masked_paths(box):
    r = box("cat", "/proc/self/mountinfo")
    assert r.rc == 0, r
    points = {m["mountpoint"] for m in parse_mountinfo(r.out)}
    for name in MASKED:
        if _host_proc_exists(name):
            assert f"/proc/{name}" in points, f"/proc/{name} is not masked:{r}"
    if os.path.isdir("/sys/firmware"):
        assert "/sys/firmware" in points, f"/sys/firmware is not masked:{r}"
    # Reads give nothing.
    r = box("sh", "-c", "cat /proc/kcore 2>/dev/null | head -c 64 | wc -c; cat /proc/keys | wc -c; ls -A /sys/firmware | wc -l")
    assert r.rc == 0, r
    assert [x.strip() for x in r.lines] == ["0", "0", "0"], r


def test_readonly_proc_paths_and_sys(box):
    r = box("cat", "/proc/self/mountinfo")
    assert r.rc == 0, r
    mounts = {}
    for m in parse_mountinfo(r.out):
        mounts[m["mountpoint"]] = m  # the last mount on a point is the visible one
    for name in READONLY:
        if _host_proc_exists(name):
            p = f"/proc/{name}"
            assert p in mounts and "ro" in mounts[p]["opts"], f"{p} is not read-only:{r}"
    assert "/sys" in mounts and "ro" in mounts["/sys"]["opts"], f"/sys is not read-only:{r}"
    for cmd in ("echo 1 > /proc/sys/kernel/ns_last_pid", "echo h > /proc/sysrq-trigger", "mkdir /sys/kernel/rbx", "touch /sys/rbx"):
        w = box("sh", "-c", cmd)
        assert w.rc != 0, f"write allowed: {cmd}{w}"


def test_dev_is_minimal(box):
    r = box(
        "sh",
        "-c",
        "ls -A /dev; echo ---; echo x > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; "
        "head -c 3 /dev/zero | wc -c; head -c 2 /dev/random | wc -c; echo x > /dev/full || echo full-enospc",
    )
    assert r.rc == 0, r
    listing, rest = r.out.split("---\n", 1)
    entries = set(listing.split())
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue"):
        assert name in entries, f"/dev/{name} missing:{r}"
    for host_only in ("kvm", "fuse", "mem", "sda", "vda", "net"):
        assert host_only not in entries, f"host device /dev/{host_only} visible:{r}"
    assert [x.strip() for x in rest.splitlines()] == ["null-ok", "4", "3", "2", "full-enospc"], r


# --- security defaults ----------------------------------------------------------


def _status_fields(text):
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def test_security_defaults(box):
    r = box("cat", "/proc/self/status")
    assert r.rc == 0, r
    st = _status_fields(r.out)
    assert st.get("NoNewPrivs") == "1", r
    assert st.get("Seccomp") == "2", f"no seccomp filter:{r}"
    assert int(st["CapEff"], 16) == DOCKER_DEFAULT_CAPS, r
    assert int(st["CapBnd"], 16) == DOCKER_DEFAULT_CAPS, r


def test_seccomp_blocks_unshare(box):
    # Docker's default profile refuses unshare(2) without CAP_SYS_ADMIN.
    r = box("unshare", "-U", "true")
    assert r.rc != 0, r


# --- exit codes and signals -----------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_code(box, code):
    r = box("sh", "-c", f"exit {code}")
    assert r.rc == code, r


def test_exit_code_killed_by_signal_with_init(box):
    # Without --init, sh is PID 1 and the kernel ignores its own kill.
    r = box("sh", "-c", "kill -TERM $$; sleep 5", opts=["--init"])
    assert r.rc == 128 + signal.SIGTERM, r


def test_exit_code_pid1_killed(box_args, background):
    b = background(box_args("sh", "-c", "echo ready; exec sleep 60"))
    b.wait_for("ready")
    pid1 = b.container_init()
    os.kill(pid1, signal.SIGKILL)
    r = b.finish(timeout=10)
    assert r.rc == 128 + signal.SIGKILL, r


@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP", "USR1"])
def test_signal_forwarded(box_args, background, sig):
    b = background(box_args("sh", "-c", f'trap "echo got; exit 3" {sig}; echo ready; while :; do sleep 0.1; done'))
    b.wait_for("ready")
    time.sleep(0.05)
    b.signal(getattr(signal, "SIG" + sig))
    r = b.finish(timeout=10)
    assert r.rc == 3, r
    assert "got" in r.out, r


@pytest.mark.parametrize("opts", [[], ["--init"]], ids=["no-init", "init"])
def test_killed_runtime_leaves_no_orphans(box_args, background, opts):
    b = background(box_args("sh", "-c", "sleep 61 & echo ready; exec sleep 60", opts=opts))
    b.wait_for("ready")
    pid1 = b.container_init()
    b.signal(signal.SIGKILL)
    b.p.wait(timeout=10)
    wait_until(lambda: not alive(pid1), timeout=10, what="the container to die with its runtime")


# --- --init ---------------------------------------------------------------------


def test_init_is_pid1(box):
    r = box("sh", "-c", "echo $$; cat /proc/1/comm", opts=["--init"])
    assert r.rc == 0, r
    sh_pid, init_comm = r.lines
    assert sh_pid != "1", f"the command is PID 1 despite --init:{r}"
    assert init_comm != "sh", r


def test_init_reaps_zombies(box):
    r = box("sh", "-c", "(sleep 0.1 &); sleep 0.6; cat /proc/[0-9]*/stat", opts=["--init"])
    assert r.rc == 0, r
    states = [line[line.rindex(")") + 2 :].split()[0] for line in r.lines if ")" in line]
    assert states, r
    assert "Z" not in states, f"zombie left unreaped:{r}"


def test_init_forwards_signal(box_args, background):
    b = background(box_args("sh", "-c", "echo ready; while :; do sleep 0.1; done", opts=["--init"]))
    b.wait_for("ready")
    b.signal(signal.SIGTERM)
    r = b.finish(timeout=10)
    assert r.rc == 128 + signal.SIGTERM, r


def test_init_forwards_signal_to_trap(box_args, background):
    b = background(box_args("sh", "-c", 'trap "echo got; exit 3" TERM; echo ready; while :; do sleep 0.1; done', opts=["--init"]))
    b.wait_for("ready")
    b.signal(signal.SIGTERM)
    r = b.finish(timeout=10)
    assert r.rc == 3 and "got" in r.out, r


def test_init_exit_code(box):
    r = box("sh", "-c", "exit 9", opts=["--init"])
    assert r.rc == 9, r


# --- stdio -----------------------------------------------------------------------


def test_stdin_with_i(box):
    r = box("cat", opts=["-i"], input="hi\n")
    assert r.rc == 0, r
    assert r.out == "hi\n", r


def test_stdin_large(box):
    r = box("wc", "-c", opts=["-i"], input=b"x" * (1 << 20))
    assert r.rc == 0, r
    assert r.out.strip() == str(1 << 20), r


def test_stdin_not_attached_without_i(box):
    # Like docker run without -i: the container's stdin is empty, nothing hangs.
    r = box("cat", input="should-not-arrive\n", timeout=15)
    assert r.rc == 0, r
    assert r.out == "", r


def test_stdout_large(box):
    r = box("head", "-c", str(1 << 20), "/dev/zero")
    assert r.rc == 0, r
    assert len(r.out_bytes) == 1 << 20, f"stdout truncated to {len(r.out_bytes)} bytes"


def test_stdout_and_stderr_separate(box):
    r = box("sh", "-c", "echo out; echo err >&2")
    assert r.rc == 0, r
    assert r.out == "out\n", r
    assert "err" in r.err and "out" not in r.err, r


def test_tty(bins, rootfs, xdg_runtime_dir):
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [bins.rootbox, "run", "-t", "--rootfs", rootfs, "--", "sh", "-c", "tty; test -t 0 && echo T0; test -t 1 && echo T1"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "XDG_RUNTIME_DIR": xdg_runtime_dir},
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: every slave end closed
                    break
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert rc == 0, text
    assert "/dev/pts/" in text and "T0" in text and "T1" in text, text


# --- errors before exec ------------------------------------------------------------


def test_missing_command(box):
    r = box("nope")
    assert r.rc == 127, r
    assert "nope" in r.err and "executable file not found" in r.err, r


def test_missing_absolute_command(box):
    r = box("/nope/cmd")
    assert r.rc == 127, r
    assert "/nope/cmd" in r.err and "no such file or directory" in r.err.lower(), r


def test_not_executable(box):
    r = box("/etc/passwd")
    assert r.rc == 126, r
    assert "permission denied" in r.err.lower(), r


def test_directory_as_command(box):
    r = box("/bin")
    assert r.rc == 126, r


def test_missing_rootfs(rootbox, tmp_path):
    missing = tmp_path / "no-such-rootfs"
    r = rootbox("run", "--rootfs", missing, "--", "true")
    assert r.rc == 125, r
    assert "rootbox:" in r.err and str(missing) in r.err, r


# --- process options ---------------------------------------------------------------


def test_workdir(box):
    r = box("pwd", opts=["-w", "/tmp"])
    assert r.rc == 0 and r.out == "/tmp\n", r


def test_workdir_created_when_missing(box, rootfs):
    r = box("pwd", opts=["-w", "/newdir"])
    assert r.rc == 0, r
    assert r.out == "/newdir\n", r
    assert (rootfs / "newdir").is_dir()


def test_workdir_missing_on_read_only_rootfs(box, rootfs):
    r = box("pwd", opts=["--read-only", "-w", "/does/not/exist"])
    assert r.rc != 0, r
    assert "/does/not/exist" in r.err, r
    assert not (rootfs / "does").exists(), "a read-only rootfs was written to"


def test_env(box):
    r = box("sh", "-c", 'echo "$FOO"; echo "$A"; echo "$PATH"', opts=["-e", "FOO=bar", "-e", "A=b=c"])
    assert r.rc == 0, r
    assert r.lines[:2] == ["bar", "b=c"], r
    assert "/bin" in r.lines[2].split(":"), r


def test_host_env_does_not_leak(box):
    r = box("env", env={"RB_HOST_SECRET": "leak"})
    assert r.rc == 0, r
    assert "RB_HOST_SECRET" not in r.out, r


@pytest.mark.many_ids
def test_user_option(box):
    r = box("sh", "-c", "id -u; id -g; echo $$", opts=["-u", "1000:1000"])
    assert r.rc == 0, r
    assert r.lines == ["1000", "1000", "1"], r


@pytest.mark.many_ids
def test_user_option_drops_capabilities(box):
    r = box("cat", "/proc/self/status", opts=["-u", "1000:1000"])
    assert r.rc == 0, r
    assert int(_status_fields(r.out)["CapEff"], 16) == 0, r


def test_inherited_fds_closed(bins, rootfs, xdg_runtime_dir):
    # The parent holds fds 5 and 7 open (inheritable) when it starts rootbox.
    r = run(
        ["sh", "-c", 'exec 5</etc/hostname 7</etc/passwd; exec "$@"', "sh",
         bins.rootbox, "run", "--rootfs", rootfs, "--", "ls", "/proc/self/fd"],
        env={"XDG_RUNTIME_DIR": xdg_runtime_dir},
    )
    assert r.rc == 0, r
    fds = set(r.out.split())
    # 0 1 2, and the directory ls is reading.
    assert {"0", "1", "2"} <= fds and fds <= {"0", "1", "2", "3"}, f"leaked fds:{r}"


def test_read_only_rootfs(box, rootfs):
    r = box("touch", "/x", opts=["--read-only"])
    assert r.rc != 0, r
    assert "read-only" in r.err.lower(), r
    assert not (rootfs / "x").exists()
    r = box("sh", "-c", "touch /tmp/x && echo ok", opts=["--read-only", "--tmpfs", "/tmp"])
    assert r.rc == 0 and r.out == "ok\n", r


def test_writable_rootfs_by_default(box, rootfs):
    r = box("sh", "-c", "echo data > /written")
    assert r.rc == 0, r
    assert (rootfs / "written").read_text() == "data\n"


# --- volumes ---------------------------------------------------------------------


@pytest.fixture
def hostdir(tmp_path):
    d = tmp_path / "hostdir"
    d.mkdir()
    (d / "hello.txt").write_text("hello-from-host\n")
    return d


def test_volume_rw(box, hostdir):
    r = box("sh", "-c", "cat /data/hello.txt; echo from-ctr > /data/new.txt", opts=["-v", f"{hostdir}:/data"])
    assert r.rc == 0, r
    assert r.out == "hello-from-host\n", r
    assert (hostdir / "new.txt").read_text() == "from-ctr\n"
    st = os.stat(hostdir / "new.txt")
    assert st.st_uid == os.getuid(), "container root should write files as the caller"


def test_volume_ro(box, hostdir):
    r = box("sh", "-c", "cat /data/hello.txt; touch /data/y", opts=["-v", f"{hostdir}:/data:ro"])
    assert r.rc != 0, r
    assert "hello-from-host" in r.out, r
    assert not (hostdir / "y").exists()


def test_volume_nested_destination_created(box, hostdir, rootfs):
    r = box("cat", "/deep/nested/dir/hello.txt", opts=["-v", f"{hostdir}:/deep/nested/dir"])
    assert r.rc == 0 and r.out == "hello-from-host\n", r


def test_volume_single_file(box, hostdir):
    r = box("cat", "/etc/rbfile", opts=["-v", f"{hostdir / 'hello.txt'}:/etc/rbfile:ro"])
    assert r.rc == 0 and r.out == "hello-from-host\n", r


def test_volume_missing_host_path(box, tmp_path):
    missing = tmp_path / "missing"
    r = box("true", opts=["-v", f"{missing}:/data"])
    assert r.rc == 125, r
    assert str(missing) in r.err, r


# --- state handling ------------------------------------------------------------------


def test_concurrent_runs(bins, base_rootfs, tmp_path, xdg_runtime_dir):
    procs = []
    for i in range(4):
        rf = tmp_path / f"rootfs{i}"
        shutil.copytree(base_rootfs, rf, symlinks=True)
        procs.append(
            subprocess.Popen(
                [bins.rootbox, "run", "--rootfs", rf, "--", "sh", "-c", f"echo {i}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "XDG_RUNTIME_DIR": xdg_runtime_dir},
            )
        )
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
        assert out.decode() == f"{i}\n"


def test_runs_without_xdg_runtime_dir(box):
    r = box("true", unset_env=("XDG_RUNTIME_DIR",), env={})
    assert r.rc == 0, r
