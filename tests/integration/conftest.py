"""Fixtures for rootbox's integration tests.

The tests drive the built binaries, never the library:

* ``ROOTBOX_BIN``: directory holding ``rootbox`` and ``rootbox-runtime``
  (default: <repo>/target/release).
* ``ROOTBOX_BUSYBOX_ROOTFS``: a rootfs made by tests/lib/mk-busybox-rootfs.sh
  (default: one is made for the session with that script).
* ``ROOTBOX_REQUIRE_SUBIDS=1``: tests that need /etc/subuid ranges fail instead
  of being skipped when the ranges or newuidmap are missing (``make test`` sets it
  for the unprivileged run, whose setup creates the ranges).

Every test gets fresh copies of the rootfs, so tests may write to them, and a
private ``--root`` state directory for rootbox-runtime.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import time

import pytest

from util import (
    HAS_SUBIDS,
    IS_ROOT,
    NEWUIDMAP,
    REPO,
    REQUIRE_SUBIDS,
    SUBGID,
    SUBUID,
    UID,
    USER,
    Background,
    alive,
    bin_dir,
    descendants,
    processes_using,
    kill_processes_using,
    kill_stray_descendants,
    run,
    subids_missing_reason,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "unprivileged: only meaningful for a non-root caller (skipped as root)")
    config.addinivalue_line("markers", "root_only: only meaningful when the caller is root")
    config.addinivalue_line(
        "markers", "subids: needs /etc/subuid+/etc/subgid ranges and newuidmap/newgidmap (unprivileged)"
    )
    config.addinivalue_line("markers", "many_ids: needs more than one mapped id (root, or subids)")


def pytest_report_header(config):
    return [
        f"rootbox: bin={bin_dir()} rootfs={os.environ.get('ROOTBOX_BUSYBOX_ROOTFS', '(built for the session)')}",
        f"rootbox: caller uid={UID} ({USER}) root={IS_ROOT} subuid={SUBUID} subgid={SUBGID} "
        f"newuidmap={NEWUIDMAP} require_subids={REQUIRE_SUBIDS}",
    ]


def pytest_runtest_setup(item):
    if item.get_closest_marker("unprivileged") and IS_ROOT:
        pytest.skip("only meaningful for an unprivileged caller")
    if item.get_closest_marker("root_only") and not IS_ROOT:
        pytest.skip("only meaningful when running as root")
    needs_subids = item.get_closest_marker("subids") is not None
    if item.get_closest_marker("many_ids") and not IS_ROOT:
        needs_subids = True
    if needs_subids:
        if IS_ROOT and item.get_closest_marker("subids"):
            pytest.skip("subordinate id ranges are for unprivileged callers")
        if not HAS_SUBIDS:
            reason = "single-id mode: " + subids_missing_reason()
            if REQUIRE_SUBIDS:
                pytest.fail(f"ROOTBOX_REQUIRE_SUBIDS=1 but {reason}")
            pytest.skip(reason)


# ---------------------------------------------------------------------------
# fixtures


_test_paths = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _describe(pids):
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"  {p}: {cmd[:200]}")
    return "\n".join(out)


@pytest.fixture(autouse=True)
def _no_stray_processes(request, tmp_path):
    """A test must leave no process behind. After each test, whatever still runs
    below the test process, or whose command line or root filesystem lies in the
    test's directories (a container orphaned to the host's init), is reported as
    an error of the test and killed (after a short grace period)."""
    _test_paths[:] = [tmp_path]
    yield
    paths = list(_test_paths)
    _test_paths.clear()

    def leftovers():
        return [p for p in set(descendants(os.getpid())) | set(processes_using(paths)) if alive(p)]

    deadline = time.monotonic() + 2.0
    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftovers()
    if not left:
        kill_stray_descendants(timeout=1.0)  # reap zombies
        return
    desc = _describe(left)
    kill_stray_descendants()
    kill_processes_using(paths)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        pytest.fail(f"the test left {len(left)} process(es) running (now killed):\n{desc}", pytrace=False)


class Bins:
    def __init__(self, d: pathlib.Path):
        self.dir = d
        self.rootbox = d / "rootbox"
        self.runtime = d / "rootbox-runtime"


@pytest.fixture(scope="session")
def bins() -> Bins:
    b = Bins(bin_dir())
    for p in (b.rootbox, b.runtime):
        if not os.access(p, os.X_OK):
            pytest.fail(f"{p} not found or not executable: run `make build` or set ROOTBOX_BIN", pytrace=False)
    return b


@pytest.fixture(scope="session")
def base_rootfs(tmp_path_factory) -> pathlib.Path:
    given = os.environ.get("ROOTBOX_BUSYBOX_ROOTFS")
    if given:
        p = pathlib.Path(given)
        if not (p / "bin" / "busybox").exists():
            pytest.fail(f"ROOTBOX_BUSYBOX_ROOTFS={p} has no bin/busybox", pytrace=False)
        return p
    dest = tmp_path_factory.mktemp("base") / "rootfs"
    script = REPO / "tests" / "lib" / "mk-busybox-rootfs.sh"
    r = run([script, dest], timeout=60)
    if r.rc != 0:
        pytest.fail(f"could not make the busybox rootfs:{r}", pytrace=False)
    return dest


def copy_rootfs(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture
def rootfs(base_rootfs, tmp_path) -> pathlib.Path:
    """A private, writable copy of the busybox rootfs for this test."""
    return copy_rootfs(base_rootfs, tmp_path / "rootfs")


@pytest.fixture(scope="session")
def xdg_runtime_dir():
    """A private XDG_RUNTIME_DIR so the tests never touch the caller's real state."""
    d = tempfile.mkdtemp(prefix="rbxdg-", dir="/tmp")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def background(xdg_runtime_dir):
    """Factory: background(args) -> Background; everything started is killed at teardown."""
    started = []

    def start(args, env=None, unset_env=()):
        e = {"XDG_RUNTIME_DIR": xdg_runtime_dir}
        e.update(env or {})
        b = Background(args, env=e, unset_env=unset_env)
        started.append(b)
        return b

    yield start
    for b in started:
        b.cleanup()


@pytest.fixture
def rootbox(bins, xdg_runtime_dir):
    """rootbox(*args, **run_kwargs) -> Result."""

    def call(*args, env=None, **kw):
        e = {} if "XDG_RUNTIME_DIR" in kw.get("unset_env", ()) else {"XDG_RUNTIME_DIR": xdg_runtime_dir}
        e.update(env or {})
        return run([bins.rootbox, *args], env=e, **kw)

    return call


@pytest.fixture
def box(rootbox, rootfs):
    """box(*cmd, opts=[...], **run_kwargs): `rootbox run --rootfs <fresh copy> OPTS -- CMD`."""

    def call(*cmd, opts=(), rootfs_dir=None, **kw):
        return rootbox("run", "--rootfs", rootfs_dir or rootfs, *opts, "--", *cmd, **kw)

    return call


@pytest.fixture
def box_args(bins, rootfs):
    """box_args(*cmd, opts=[...]) -> the argv of `rootbox run` (for Background)."""

    def make(*cmd, opts=()):
        return [str(bins.rootbox), "run", "--rootfs", str(rootfs), *map(str, opts), "--", *map(str, cmd)]

    return make


@pytest.fixture
def state_root(bins):
    """A private, short (unix socket paths!) --root directory for rootbox-runtime."""
    d = tempfile.mkdtemp(prefix="rbst-", dir="/tmp")
    os.chmod(d, 0o700)
    _test_paths.append(pathlib.Path(d))
    yield pathlib.Path(d)
    # Remove whatever a failing test left behind; a runtime that hangs here is
    # not this test's failure (processes left over are reported by _no_stray_processes).
    try:
        r = run([bins.runtime, "--root", d, "list", "--quiet"], timeout=5)
        if r.rc == 0:
            for cid in r.out.split():
                run([bins.runtime, "--root", d, "delete", "--force", cid], timeout=5)
    except AssertionError as e:
        print(f"state_root cleanup: {e}")
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def runtime(bins, state_root, xdg_runtime_dir):
    """runtime(*args, **run_kwargs): `rootbox-runtime --root <private dir> ARGS`."""

    def call(*args, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": xdg_runtime_dir}
        e.update(env or {})
        return run([bins.runtime, "--root", state_root, *args], env=e, **kw)

    return call


@pytest.fixture
def make_bundle(bins, base_rootfs, tmp_path):
    """make_bundle(args, edit=None, name=None) -> bundle dir.

    A fresh copy of the rootfs plus the config.json written by
    `rootbox-runtime spec --rootless`, with process.args=ARGS and
    terminal=false; EDIT(config) may change the config further."""
    counter = [0]

    def make(args=("true",), edit=None, name=None):
        counter[0] += 1
        b = tmp_path / (name or f"bundle{counter[0]}")
        b.mkdir()
        copy_rootfs(base_rootfs, b / "rootfs")
        r = run([bins.runtime, "spec", "--rootless", "--bundle", b])
        assert r.rc == 0, f"`rootbox-runtime spec --rootless` failed:{r}"
        cfg_path = b / "config.json"
        assert cfg_path.exists(), f"spec --rootless wrote no {cfg_path}:{r}"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = [str(a) for a in args]
        if edit:
            edit(cfg)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        return b

    return make


class Lifecycle:
    """`rootbox` with a private state directory (ROOTBOX_STATE_DIR), for the lifecycle tests:
    lc(*args, **run_kwargs) -> Result; lc.json(*args) parses stdout; lc.inspect(ref) -> dict."""

    def __init__(self, bins, state_dir: pathlib.Path, xdg: str):
        self.bins = bins
        self.dir = state_dir
        self.env = {"ROOTBOX_STATE_DIR": str(state_dir), "XDG_RUNTIME_DIR": xdg}

    def __call__(self, *args, env=None, **kw):
        e = dict(self.env)
        e.update(env or {})
        return run([self.bins.rootbox, *args], env=e, **kw)

    def argv(self, *args):
        return [str(self.bins.rootbox), *map(str, args)]

    def inspect(self, ref):
        r = self("inspect", ref)
        assert r.rc == 0, r
        data = json.loads(r.out)
        assert isinstance(data, list) and len(data) == 1, r
        return data[0]

    def monitor_pids(self):
        """Live rootbox-monitor processes of this state directory."""
        found = []
        for p in processes_using([self.dir]):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"rootbox-monitor") and alive(p):
                found.append(p)
        return found


@pytest.fixture
def lc(bins, xdg_runtime_dir):
    """A Lifecycle helper with a fresh state directory. At teardown every container left is
    removed with `rm -f`; a monitor still running after that fails the test."""
    for name in ("rootbox-monitor", "rootbox-monitor-supervise"):
        monitor = bins.dir / name
        if not os.access(monitor, os.X_OK):
            pytest.fail(f"{monitor} not found or not executable: run `make build`", pytrace=False)
    d = pathlib.Path(tempfile.mkdtemp(prefix="rblc-", dir="/tmp"))
    os.chmod(d, 0o700)
    _test_paths.append(d)
    h = Lifecycle(bins, d, xdg_runtime_dir)
    yield h
    problems = []
    try:
        r = h("ps", "-aq", "--no-trunc", timeout=10)
        for cid in r.out.split():
            rr = h("rm", "-f", cid, timeout=20)
            if rr.rc != 0:
                problems.append(f"rm -f {cid} failed:{rr}")
    except AssertionError as e:
        problems.append(f"cleanup: {e}")
    left = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = h.monitor_pids()
        if not left:
            break
        time.sleep(0.05)
    for p in left:
        try:
            os.kill(p, 9)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)
    if left:
        problems.append(f"monitor processes left after rm -f of every container: {left}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
