"""Helpers shared by the integration tests (process runners, /proc parsers, host facts)."""

from __future__ import annotations

import os
import ctypes
import pathlib
import pwd
import grp
import select
import shutil
import signal
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]

IS_ROOT = os.geteuid() == 0
UID = os.getuid()
GID = os.getgid()
USER = pwd.getpwuid(UID).pw_name
try:
    GROUP = grp.getgrgid(GID).gr_name
except KeyError:
    GROUP = str(GID)

# Per command. Everything here takes well under a second when it works; a hang
# must cost little, since a broken build may hang in every test.
DEFAULT_TIMEOUT = 15


# ---------------------------------------------------------------------------
# host facts


def subid_range(path: str, name: str, ident: int):
    """First (start, count) range of NAME or numeric IDENT in /etc/subuid-like PATH."""
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) != 3 or parts[0].startswith("#"):
                    continue
                if parts[0] in (name, str(ident)):
                    return int(parts[1]), int(parts[2])
    except FileNotFoundError:
        pass
    return None


def _which(name: str):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/bin:/usr/sbin:/sbin")


SUBUID = subid_range("/etc/subuid", USER, UID)
# newgidmap looks the caller up by user name (or uid) in /etc/subgid, not by group.
SUBGID = subid_range("/etc/subgid", USER, UID)
NEWUIDMAP = _which("newuidmap")
NEWGIDMAP = _which("newgidmap")
HAS_SUBIDS = bool(SUBUID and SUBGID and NEWUIDMAP and NEWGIDMAP)
REQUIRE_SUBIDS = os.environ.get("ROOTBOX_REQUIRE_SUBIDS") == "1"


def subids_missing_reason() -> str:
    missing = []
    if not SUBUID:
        missing.append(f"no range for {USER} in /etc/subuid")
    if not SUBGID:
        missing.append(f"no range for {USER} in /etc/subgid")
    if not NEWUIDMAP:
        missing.append("newuidmap not found")
    if not NEWGIDMAP:
        missing.append("newgidmap not found")
    return ", ".join(missing)


# ---------------------------------------------------------------------------
# process helpers


class Result:
    """Outcome of one command: rc, out/err as text, out_bytes/err_bytes raw."""

    def __init__(self, args, rc, out_bytes, err_bytes, duration):
        self.args = [str(a) for a in args]
        self.rc = rc
        self.out_bytes = out_bytes
        self.err_bytes = err_bytes
        self.out = out_bytes.decode("utf-8", "replace")
        self.err = err_bytes.decode("utf-8", "replace")
        self.duration = duration

    @property
    def lines(self):
        return self.out.splitlines()

    def __repr__(self):
        def cut(s):
            return s if len(s) < 2000 else s[:2000] + f"... ({len(s)} chars)"

        return (
            f"\n$ {' '.join(self.args)}\nexit code: {self.rc} ({self.duration:.2f}s)\n"
            f"--- stdout ---\n{cut(self.out)}\n--- stderr ---\n{cut(self.err)}"
        )

    __str__ = __repr__


def _base_env(extra=None, unset=()):
    env = dict(os.environ)
    for k in unset:
        env.pop(k, None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, *, input=None, timeout=DEFAULT_TIMEOUT, env=None, unset_env=(), cwd=None, pass_fds=()):
    """Run ARGS to completion. stdout/stderr go to files (not pipes), so a
    detached container that inherits them can never make this hang; stdin is
    /dev/null unless INPUT (str or bytes) is given."""
    args = [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode()
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_base_env(env, unset_env),
            cwd=cwd,
            pass_fds=pass_fds,
            start_new_session=True,
        )
        try:
            if input is not None:
                p.communicate(input=input, timeout=timeout)
            else:
                p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
            p.wait()
            out.seek(0)
            err.seek(0)
            r = Result(args, None, out.read(), err.read(), time.monotonic() - start)
            raise AssertionError(f"timed out after {timeout}s:{r}")
        out.seek(0)
        err.seek(0)
        return Result(args, p.returncode, out.read(), err.read(), time.monotonic() - start)


def proc_table():
    """{pid: (ppid, state, comm)} of every process we can see."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        rest = data[data.rindex(")") + 2 :].split()
        table[int(d)] = (int(rest[1]), rest[0], comm)
    return table


def descendants(pid):
    """All live descendants of PID (by parent links), nearest first."""
    table = proc_table()
    children = {}
    for p, (pp, _state, _comm) in table.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        cur = todo.pop(0)
        for c in children.get(cur, []):
            out.append(c)
            todo.append(c)
    return out


def nspids(pid):
    """The NSpid line of /proc/PID/status: pid in each nested pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def alive(pid):
    """True when PID exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on):
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def kill_tree(pid):
    """SIGKILL PID and everything below it, including processes orphaned meanwhile.

    The test process becomes a child subreaper while it does so, so a container
    whose runtime dies is reparented here (not to the host's init) and killed too."""
    _subreaper(True)
    try:
        for p in reversed(descendants(pid)):
            _kill(p)
        _kill(pid)
    finally:
        kill_stray_descendants(keep_subreaper=True)
        _subreaper(False)


def kill_stray_descendants(timeout=10.0, keep_subreaper=False, spare=()):
    """SIGKILL every live process below the test process (except SPARE) and reap
    the zombies among its direct children. Returns the pids that were alive."""
    me = os.getpid()
    found = []
    if not keep_subreaper:
        _subreaper(True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            procs = [d for d in descendants(me) if d not in spare]
            live = [d for d in procs if alive(d)]
            found.extend(p for p in live if p not in found)
            for d in live:
                _kill(d)
            for d in procs:
                try:
                    os.waitpid(d, os.WNOHANG)
                except ChildProcessError:
                    pass
            if not live or time.monotonic() > deadline:
                return found
            time.sleep(0.02)
    finally:
        if not keep_subreaper:
            _subreaper(False)


def _fs_relative(path):
    """PATH as the root field of /proc/*/mountinfo shows it: relative to its filesystem's mount."""
    path = os.path.realpath(str(path))
    mp = path
    while not os.path.ismount(mp):
        mp = os.path.dirname(mp)
    rel = os.path.relpath(path, mp)
    return "/" if rel == "." else "/" + rel


def processes_using(paths):
    """Pids (other than ours) whose command line names one of PATHS, or whose
    mount namespace has its root on one of them: the runtime processes and
    containers of a test, even when they were orphaned to the host's init."""
    strs = [str(p) for p in paths]
    rels = [_fs_relative(p) for p in paths]
    me = os.getpid()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if any(s in cmd for s in strs):
            found.append(int(d))
            continue
        try:
            with open(f"/proc/{d}/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 4 and fields[4] == "/":
                        root = fields[3]
                        if any(root == r or root.startswith(r.rstrip("/") + "/") for r in rels if r != "/"):
                            found.append(int(d))
                            break
        except OSError:
            continue
    return found


def kill_processes_using(paths, timeout=10.0):
    """SIGKILL (until gone) every process processes_using(PATHS) finds; returns them."""
    killed = []
    deadline = time.monotonic() + timeout
    while True:
        live = [p for p in processes_using(paths) if alive(p)]
        if not live or time.monotonic() > deadline:
            return killed
        for p in live:
            _kill(p)
            if p not in killed:
                killed.append(p)
        kill_stray_descendants(timeout=1.0)
        time.sleep(0.02)


class Background:
    """A command running in the background with stdout/stderr on pipes."""

    def __init__(self, args, *, env=None, unset_env=()):
        self.args = [str(a) for a in args]
        self.start = time.monotonic()
        self.p = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_base_env(env, unset_env),
        )
        self.pid = self.p.pid
        self._out = b""
        self._err = b""
        self._open = {self.p.stdout.fileno(): "out", self.p.stderr.fileno(): "err"}

    def _pump(self, timeout):
        if not self._open:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select(list(self._open), [], [], timeout)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                del self._open[fd]
                continue
            if self._open[fd] == "out":
                self._out += data
            else:
                self._err += data

    @property
    def out(self):
        return self._out.decode("utf-8", "replace")

    @property
    def err(self):
        return self._err.decode("utf-8", "replace")

    def wait_for(self, text, timeout=15.0):
        """Wait until TEXT appears on stdout; fail with the output so far."""
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._open and self.p.poll() is not None):
                self.p.poll()
                raise AssertionError(
                    f"{text!r} not seen on stdout of {' '.join(self.args)} "
                    f"(exit code {self.p.returncode})\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"
                )
            self._pump(min(left, 0.1))

    def container_init(self, timeout=10.0):
        """Host pid of the container's PID 1 (a descendant whose innermost pid is 1)."""

        def find():
            # Below the runtime, or (CLONE_PARENT) a sibling of it below this test.
            for root in (self.pid, os.getpid()):
                for d in descendants(root):
                    ns = nspids(d)
                    if len(ns) >= 2 and ns[-1] == 1:
                        return d
            return None

        return wait_until(find, timeout, what=f"the container's PID 1 under pid {self.pid}")

    def signal(self, sig):
        self.p.send_signal(sig)

    def finish(self, timeout=DEFAULT_TIMEOUT) -> Result:
        deadline = time.monotonic() + timeout
        while self._open or self.p.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                kill_tree(self.pid)
                self.p.wait()
                r = Result(self.args, None, self._out, self._err, time.monotonic() - self.start)
                raise AssertionError(f"timed out after {timeout}s:{r}")
            self._pump(min(left, 0.1))
        return Result(self.args, self.p.returncode, self._out, self._err, time.monotonic() - self.start)

    def cleanup(self):
        if self.p.poll() is None:
            kill_tree(self.pid)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# binaries


def bin_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ROOTBOX_BIN") or REPO / "target" / "release")


# ---------------------------------------------------------------------------
# small parsers shared by the tests


def parse_mountinfo(text):
    """[{mountpoint, opts (per-mount), fstype, source, super_opts}] from mountinfo text."""
    mounts = []
    for line in text.splitlines():
        f = line.split()
        if "-" not in f:
            continue
        sep = f.index("-")
        mounts.append(
            {
                "mountpoint": f[4].encode().decode("unicode_escape"),
                "opts": f[5].split(","),
                "fstype": f[sep + 1],
                "source": f[sep + 2] if len(f) > sep + 2 else "",
                "super_opts": f[sep + 3].split(",") if len(f) > sep + 3 else [],
            }
        )
    return mounts


def parse_idmap(text):
    """[[inside, outside, count], ...] from /proc/PID/uid_map text."""
    return [[int(x) for x in line.split()] for line in text.strip().splitlines() if line.strip()]
