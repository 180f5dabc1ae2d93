"""Escape and leak checks (issue 12, part 1): what a process inside a container can
reach of its host, tested from inside, as the unprivileged user."""

import os
import shutil
import subprocess

import pytest

from util import HERE, IS_ROOT, run

PROBE_SRC = HERE / "probes" / "secprobe.c"
EPERM = 1

# System calls Docker's default profile refuses to a container without extra capabilities.
REFUSED = ["keyctl", "add_key", "bpf", "userfaultfd", "perf_event_open", "unshare_user"]


@pytest.fixture(scope="session")
def secprobe(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: install gcc and libc6-dev (tests/setup-root.sh does)", pytrace=False)
    out = tmp_path_factory.mktemp("probe") / "secprobe"
    r = subprocess.run([cc, "-static", "-O2", "-o", str(out), str(PROBE_SRC)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot build {PROBE_SRC} statically (libc6-dev?):\n{r.stderr}", pytrace=False)
    return out


@pytest.fixture
def probe_rootfs(rootfs, secprobe):
    shutil.copy2(secprobe, rootfs / "bin" / "secprobe")
    return rootfs


# --- seccomp -------------------------------------------------------------------------


def _syscall_results(box, opts=()):
    script = "; ".join(f"secprobe syscall {s}" for s in REFUSED)
    r = box("sh", "-c", script, opts=list(opts))
    assert r.rc == 0, r
    res = dict(line.split(" ", 1) for line in r.lines)
    assert set(res) == set(REFUSED), r
    return res, r


def test_default_profile_refuses_dangerous_syscalls(box, probe_rootfs):
    res, r = _syscall_results(box)
    for name in REFUSED:
        assert res[name] == f"errno={EPERM}", f"{name} not refused with EPERM:{r}"


def test_unconfined_lifts_the_filter(box, probe_rootfs):
    # The control: the same calls without the filter are not all refused, so the
    # test above measures the profile, not the kernel's own limits.
    res, r = _syscall_results(box, ["--security-opt", "seccomp=unconfined"])
    assert res["keyctl"] == "ok", r
    assert res["add_key"] == "ok", r


def test_custom_profile(box, probe_rootfs, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ['
        '{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}'
    )
    res, r = _syscall_results(box, ["--security-opt", f"seccomp={profile}"])
    assert res["keyctl"] == "errno=13", r
    assert res["add_key"] == "ok", r


def test_bad_seccomp_profile(box, probe_rootfs, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    r = box("true", opts=["--security-opt", f"seccomp={bad}"])
    assert r.rc != 0, r
    assert "SCMP_ACT_NOPE" in r.err, r
    r = box("true", opts=["--security-opt", f"seccomp={tmp_path / 'missing.json'}"])
    assert r.rc != 0, r
    assert "missing.json" in r.err, r


# --- privileges ------------------------------------------------------------------------


@pytest.mark.many_ids
def test_setuid_binary_gains_nothing(box, probe_rootfs):
    """A setuid-root binary in the image, run by a non-root container user: no_new_privs
    keeps its effective uid the caller's."""
    target = probe_rootfs / "bin" / "secprobe"
    os.chmod(target, 0o4755)
    r = box("sh", "-c", "ls -ln /bin/secprobe; secprobe ids", opts=["-u", "1000:1000"])
    assert r.rc == 0, r
    assert r.lines[0].startswith("-rwsr-xr-x"), r
    assert r.lines[1] == "1000 1000 1000 1000", f"setuid binary gained privileges:{r}"


def test_capabilities_equal_configured_set_after_exec(box):
    # Effective, permitted, bounding equal; ambient and inheritable empty (Docker's defaults).
    r = box("sh", "-c", "grep ^Cap /proc/self/status")
    assert r.rc == 0, r
    caps = {line.split(":")[0]: int(line.split(":")[1], 16) for line in r.lines}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"], r
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0, r


# --- file descriptors and /proc ------------------------------------------------------


def test_cwd_through_leaked_fd_refused(bins, rootfs, xdg_runtime_dir):
    """CVE-2024-21626: the parent holds fd 7 open on a host directory; `-w
    /proc/self/fd/7` must not put the container's process in the host's tree."""
    r = run(
        ["sh", "-c", 'exec 7</; exec "$@"', "sh",
         bins.rootbox, "run", "--rootfs", rootfs, "-w", "/proc/self/fd/7", "--", "sh", "-c", "pwd; ls /"],
        env={"XDG_RUNTIME_DIR": xdg_runtime_dir},
    )
    if r.rc == 0:
        # Acceptable only if the cwd ended up inside the container (fd 7 closed first).
        assert not r.lines[0].startswith("/proc/self/fd"), r
        assert "(unreachable)" not in r.out, r
    else:
        assert "/proc/self/fd/7" in r.err, r


def test_runtime_cwd_through_leaked_fd_refused(runtime, make_bundle, bins, state_root):
    def edit(cfg):
        cfg["process"]["cwd"] = "/proc/self/fd/7"

    b = make_bundle(["sh", "-c", "pwd; ls /"], edit=edit)
    r = run(["sh", "-c", 'exec 7</; exec "$@"', "sh", bins.runtime, "--root", state_root, "run", "--bundle", b, "x1"])
    assert r.rc != 0 or ("(unreachable)" not in r.out and not r.out.startswith("/proc")), r


def test_host_exe_not_reachable_from_proc(box, probe_rootfs):
    """No process the container can see has an executable outside the container
    (CVE-2019-5736: the runtime must never be visible as /proc/PID/exe)."""
    r = box(
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do e=$(readlink $p/exe 2>/dev/null) || continue; echo \"$e\"; done",
    )
    assert r.rc == 0, r
    for exe in r.lines:
        assert "rootbox" not in exe, f"the runtime is visible inside:{r}"


def test_proc_exe_of_exec_runtime_not_writable(runtime, make_bundle, secprobe, tmp_path):
    """While `rootbox-runtime exec` joins a container, the container's root tries to
    open every /proc/PID/exe for writing: it must never succeed (the joining process is
    non-dumpable until it execs)."""
    b = make_bundle(
        [
            "sh",
            "-c",
            "end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do "
            "for p in /proc/[0-9]*; do secprobe open $p/exe w >/dev/null && echo WROTE $p; done; done; "
            "echo done > /tmp/done; sleep 30",
        ]
    )
    shutil.copy2(secprobe, b / "rootfs" / "bin" / "secprobe")
    r = runtime("run", "--detach", "--bundle", b, "e1", timeout=15)
    assert r.rc == 0, r
    for _ in range(40):
        x = runtime("exec", "e1", "true", timeout=30)
        assert x.rc == 0, x
    r = runtime("exec", "e1", "sh", "-c", "while [ ! -f /tmp/done ]; do sleep 0.1; done; echo finished", timeout=60)
    assert r.rc == 0 and "finished" in r.out, r
    out = (b / "rootfs" / "tmp" / "done").read_text()
    assert out == "done\n"
    assert runtime("delete", "--force", "e1").rc == 0


# --- hostile rootfs layouts --------------------------------------------------------


@pytest.mark.parametrize("where", ["proc", "sys", "dev"])
def test_mount_point_symlink_to_host_path(box, rootfs, tmp_path, where):
    """/proc (or /sys, /dev) in the image is a symlink to a host path: nothing may be
    mounted on the host path, and the container either refuses to start or sees the
    mount inside its own root."""
    canary = tmp_path / f"canary-{where}"
    canary.mkdir()
    shutil.rmtree(rootfs / where)
    os.symlink(str(canary), rootfs / where)
    r = box("sh", "-c", f"ls /{where}/ | head -3")
    assert r.rc != 0, f"started with /{where} a symlink to a host path:{r}"
    assert f"/{where} is a symbolic link" in r.err, r
    assert list(canary.iterdir()) == [], "the host directory was written to"
    with open("/proc/self/mountinfo") as f:
        assert str(canary) not in f.read()


def test_volume_destination_symlink_stays_inside(box, rootfs, tmp_path):
    """A volume whose destination is an absolute symlink in the image to a host
    path ends up inside the container's root, never on the host path."""
    hostdir = tmp_path / "vol"
    hostdir.mkdir()
    (hostdir / "data").write_text("volume\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), rootfs / "evil")
    r = box("sh", "-c", "cat /evil/data", opts=["-v", f"{hostdir}:/evil"])
    if r.rc == 0:
        assert r.out == "volume\n", r
    else:
        assert "/evil" in r.err, r
    assert list(outside.iterdir()) == [], "a mount or file landed on the host path"


def test_volume_destination_symlink_followed_inside_root(box, rootfs, tmp_path):
    """As Docker does, a volume on a symlink (`/var/run` -> `/run` style) lands on the
    symlink's target, resolved inside the container's root."""
    hostdir = tmp_path / "vol"
    hostdir.mkdir()
    (hostdir / "data").write_text("volume\n")
    (rootfs / "real").mkdir()
    os.symlink("/real", rootfs / "link")
    r = box("sh", "-c", "cat /real/data /link/data", opts=["-v", f"{hostdir}:/link"])
    assert r.rc == 0, r
    assert r.out == "volume\nvolume\n", r


# --- proc, fds and confinement of every process, the joined ones included ------------


def test_proc_symlink_inside_or_relative_refused(box, rootfs, tmp_path):
    """/proc in the image replaced by a symlink, relative this time: to a directory of the
    image, and `..`-laden toward a host directory. Both refused, nothing mounted anywhere."""
    canary = tmp_path / "canary"
    canary.mkdir()
    for target in ("tmp", "../" * 12 + str(canary).lstrip("/")):
        shutil.rmtree(rootfs / "proc", ignore_errors=True)
        if os.path.islink(rootfs / "proc"):
            os.unlink(rootfs / "proc")
        os.symlink(target, rootfs / "proc")
        r = box("sh", "-c", "cat /proc/self/status | head -1")
        assert r.rc != 0 and "/proc is a symbolic link" in r.err, f"/proc -> {target}:{r}"
        assert list(canary.iterdir()) == [] and list((rootfs / "tmp").iterdir()) == []
    with open("/proc/self/mountinfo") as f:
        assert str(canary) not in f.read()


def _leak_fds_shell():
    # The parent opens a file, a directory and a socket without O_CLOEXEC before exec'ing rootbox.
    return 'exec 5</etc/hostname 6</ 7<>/dev/null; exec "$@"'


def test_no_host_fd_in_any_container_process(bins, probe_rootfs, xdg_runtime_dir):
    """With --init (two processes of ours inside), a parent holding extra fds open: no process
    in the container has more than stdio open, and none points at a host path."""
    script = (
        "for p in /proc/[0-9]*; do [ $p = /proc/self ] && continue; "
        "for f in $p/fd/*; do echo \"$p $(basename $f) $(readlink $f)\"; done; done"
    )
    r = run(
        ["sh", "-c", _leak_fds_shell(), "sh",
         bins.rootbox, "run", "--init", "--rootfs", probe_rootfs, "--", "sh", "-c", script],
        env={"XDG_RUNTIME_DIR": xdg_runtime_dir},
    )
    assert r.rc == 0, r
    for line in r.lines:
        proc, fd, target = (line.split(" ", 2) + [""])[:3]
        # Stdio is what the caller gave; beyond it only the shell's own pipe or directory.
        if int(fd) <= 2:
            continue
        assert int(fd) == 3 and target.startswith(("pipe:", "/proc/")), f"a leaked fd is visible: {line}{r}"


def _status(text):
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def test_exec_is_confined_like_the_container(lc, probe_rootfs):
    """A process that joins with `rootbox exec` gets what the container's own process got:
    no_new_privs, the seccomp filter, the same capabilities, and none of the fds the caller of
    `exec` held open."""
    r = lc("run", "-d", "--name", "conf", "--rootfs", probe_rootfs, "--", "sleep", "1000")
    assert r.rc == 0, r
    own = lc("exec", "conf", "cat", "/proc/1/status")
    assert own.rc == 0, own
    r = run(["sh", "-c", _leak_fds_shell(), "sh", *lc.argv("exec", "conf", "sh", "-c",
             "cat /proc/self/status; echo ---; ls /proc/self/fd; echo ---; "
             + "; ".join(f"secprobe syscall {s}" for s in REFUSED))], env=lc.env)
    assert r.rc == 0, r
    status, fds, syscalls = r.out.split("---\n")
    st, pid1 = _status(status), _status(own.out)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", r
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert st[cap] == pid1[cap], f"{cap} differs from the container's own process:{r}"
    assert set(fds.split()) <= {"0", "1", "2", "3"}, f"leaked fds in exec:{r}"
    for line in syscalls.splitlines():
        assert line.endswith(f"errno={EPERM}"), f"refused syscall allowed in exec: {line}{r}"


def test_masked_paths_give_nothing_and_refuse_writes(box):
    """Beyond the mount table (test_run.py): reading a masked path yields nothing, and neither
    the masked nor the read-only ones can be written, even by the container's root."""
    cmds = {
        "read /proc/keys": "cat /proc/keys",
        "read /proc/timer_list": "cat /proc/timer_list",
        "write /proc/sysrq-trigger": "echo h > /proc/sysrq-trigger",
        "write /proc/sys/kernel/hostname": "echo evil > /proc/sys/kernel/hostname",
        "write /proc/sys/vm/drop_caches": "echo 3 > /proc/sys/vm/drop_caches",
        "write /proc/kcore": "echo x > /proc/kcore",
        "create in /sys/firmware": "touch /sys/firmware/x",
        "remount /proc/sys rw": "mount -o remount,rw /proc/sys",
        "unmount a mask": "umount /proc/keys",
    }
    script = "; ".join(f"if sh -c '{c}' >/dev/null 2>&1; then echo 'ALLOWED {k}'; fi"
                       for k, c in cmds.items() if not k.startswith("read"))
    reads = "; ".join(f"echo \"{k} $({c} 2>/dev/null | wc -c)\"" for k, c in cmds.items() if k.startswith("read"))
    r = box("sh", "-c", script + "; " + reads)
    assert "ALLOWED" not in r.out, r
    for line in r.lines:
        if line.startswith("read "):
            assert line.endswith(" 0"), f"a masked path gave content: {line}{r}"
    h = box("hostname")
    assert h.rc == 0 and "evil" not in h.out, h


def test_generated_etc_files_do_not_follow_image_symlinks(rootbox, tmp_path, bins, xdg_runtime_dir):
    """/etc/hosts, /etc/hostname and /etc/resolv.conf in an image are symlinks to host paths
    (absolute and `..`-laden): the files rootbox generates for the container land inside it,
    never on the host."""
    import hostile
    import imagebuild as ib

    canary = tmp_path / "canary"
    canary.mkdir()
    evil = (ib.Layer().dir("etc")
            .symlink("etc/hosts", f"{canary}/hosts")
            .symlink("etc/hostname", "../" * 12 + f"{str(canary).lstrip('/')}/hostname")
            .symlink("etc/resolv.conf", f"{canary}/resolv.conf"))
    archive = hostile.Oci([hostile.base_layer(), evil.bytes()]).write(tmp_path / "etc.tar")
    store = tmp_path / "store"
    env = {"ROOTBOX_ROOT": str(store)}
    try:
        assert rootbox("load", "-i", archive, env=env).rc == 0
        r = rootbox("run", "--rm", "--hostname", "inside", hostile.REF, "sh", "-c",
                    "cat /etc/hostname; grep -c . /etc/hosts; echo x >> /etc/hosts", env=env, timeout=30)
        if r.rc == 0:
            assert r.lines[0] == "inside", r
        else:
            assert "/etc/" in r.err, r
        assert list(canary.iterdir()) == [], f"a generated file was written on the host:{r}"
    finally:
        shutil.rmtree(store / "containers", ignore_errors=True)
        run([bins.rootbox, "image", "prune", "-a"], env={**env, "XDG_RUNTIME_DIR": xdg_runtime_dir})
