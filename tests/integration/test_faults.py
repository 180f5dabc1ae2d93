"""Faults (issue 12, part 4): the `rootbox` CLI SIGKILLed at every point of `run` (resolving,
unpacking, mounting, after the container started; between the store's in-use record and the
container's registration), of `load`, of `commit` and of `pull` (from a local registry); a
full disk during load, unpack and commit; a store on a filesystem without user xattrs.
Afterwards: no orphan process, no mount on the host, no lock that blocks, nothing
half-written that is taken for whole, and the next command works."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import hostile
import imagebuild as ib
from util import IS_ROOT, alive, processes_using, run, wait_until

try:
    from test_registry import REGISTRY, Registry
except ImportError:  # pragma: no cover - test_registry.py is part of this suite
    REGISTRY, Registry = None, None

UNSHARE = shutil.which("unshare")
# Delays (seconds) after which the CLI is killed: from "before it did anything" to "the
# container runs" (a first `run` of an image unpacks busybox, then 500 files of its own).
DELAYS = [0.0, 0.005, 0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.18, 0.25, 0.4, 0.7]


class Env:
    def __init__(self, bins, root: pathlib.Path, xdg: str):
        self.bins = bins
        self.root = root
        self.store = root / "store"
        self.state = root / "state"
        self.state.mkdir(mode=0o700)
        self.env = {"ROOTBOX_ROOT": str(self.store), "ROOTBOX_STATE_DIR": str(self.state), "XDG_RUNTIME_DIR": xdg}

    def rb(self, *args, **kw):
        return run([self.bins.rootbox, *map(str, args)], env=self.env, **kw)

    def popen(self, *args, store=None):
        env = {**os.environ, **self.env}
        if store is not None:
            env["ROOTBOX_ROOT"] = str(store)
        return subprocess.Popen([str(self.bins.rootbox), *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


@pytest.fixture
def fenv(bins, tmp_path, xdg_runtime_dir):
    root = pathlib.Path(tempfile.mkdtemp(prefix="rbfault-", dir="/tmp"))
    e = Env(bins, root, xdg_runtime_dir)
    yield e
    for cid in e.rb("ps", "-aq", "--no-trunc").out.split():
        e.rb("rm", "-f", cid)
    shutil.rmtree(e.store / "containers", ignore_errors=True)
    if (e.store / "index.json").exists():
        e.rb("image", "prune", "-a", timeout=120)
    # (A run killed during the overlay probe leaves the probe's mode-000 work/work dir behind.)
    run(["chmod", "-R", "u+rwX", str(root)])
    shutil.rmtree(root, ignore_errors=True)


def _image(tag: int) -> ib.Image:
    """busybox plus a layer of 500 small files unique to TAG (so each unpacks afresh)."""
    extra = ib.Layer().dir("data")
    for i in range(500):
        extra.file(f"data/f{i}", f"{tag}:{i}\n".encode())
    return ib.Image([hostile.base_layer(), extra.bytes()], {"architecture": hostile._arch(), "os": "linux",
                                                            "config": {"Cmd": ["/bin/sh"]}})


def _no_leftovers(e: Env):
    """Nothing runs from the store or state, nothing of them is mounted on the host."""
    wait_until(lambda: not [p for p in processes_using([e.store, e.state]) if alive(p)], timeout=10,
               what="processes of killed runs to go")
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert str(e.root) not in mounts, "a mount of the store or state is visible on the host"


def test_sigkill_of_run_at_every_point(fenv):
    names = []
    for i in range(len(DELAYS)):
        p = fenv.root / f"img{i}.tar"
        ib.write_docker_archive(p, _image(i), [f"fault/img:{i}"])
        r = fenv.rb("load", "-i", p, timeout=60)
        assert r.rc == 0, r
        names.append(f"fault/img:{i}")
    for name, delay in zip(names, DELAYS):
        p = fenv.popen("run", "--rm", name, "sh", "-c", "sleep 30")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    _no_leftovers(fenv)
    # No stale lock or half-unpacked layer: every image runs now, quickly, with its content.
    for i, name in enumerate(names):
        r = fenv.rb("run", "--rm", name, "sh", "-c", "cat /data/f499", timeout=20)
        assert r.rc == 0 and r.out == f"{i}:499\n", r
    # What the killed runs left is state a user can clean with ordinary commands.
    rows = fenv.rb("ps", "-a", "--format", "json")
    assert rows.rc == 0, rows
    for cid in fenv.rb("ps", "-aq", "--no-trunc").out.split():
        r = fenv.rb("rm", "-f", cid)
        assert r.rc == 0, r
    r = fenv.rb("container", "prune", "-f")
    assert r.rc == 0, r
    # Every image can be removed without --force (the in-use records of runs killed before
    # they registered their container are known as abandoned), and GC takes the
    # half-unpacked layers of killed unpacks and those records with it.
    # (Removing files can be slow here: /tmp is ext4 mounted with `discard`.)
    r = fenv.rb("rmi", *names, timeout=120)
    assert r.rc == 0, f"images held by what killed runs left:{r}"
    _store_empty(fenv)


def _store_empty(e: Env):
    """No container record, layer (but lock files), partial file or blob is left."""
    left = [(str(p.relative_to(e.store)), p.read_text() if p.is_file() else None)
            for p in sorted((e.store / "containers").rglob("*")) if len(p.relative_to(e.store).parts) <= 3]
    assert left == [], f"container directories left in the store: {left}"
    assert [p for p in e.store.glob("layers/*/*") if not p.name.endswith(".lock")] == []
    assert list((e.store / "tmp").iterdir()) == []
    assert list((e.store / "blobs/sha256").iterdir()) == []


def _slow_image(tag: str, files=6000) -> ib.Image:
    """busybox plus a layer of many small files unique to TAG: unpacking it takes a while."""
    extra = ib.Layer().dir("many")
    for i in range(files):
        extra.file(f"many/f{i}", f"{tag}:{i}\n".encode())
    return ib.Image([hostile.base_layer(), extra.bytes()], {"architecture": hostile._arch(), "os": "linux",
                                                            "config": {"Cmd": ["/bin/sh"]}})


def _wait_for_file(pattern_dir: pathlib.Path, pattern: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(pattern_dir.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.001)
    return None


def test_run_killed_before_registering_does_not_hold_the_image(fenv):
    """`run` SIGKILLed after the store recorded its container as using the image and before
    the container was registered (here: while it unpacks the image's layers). The record stays
    behind, but its owner is gone and the container never existed: plain `rmi` (no --force)
    removes the image, and the record, the half-unpacked layer and every blob go with it."""
    for attempt in range(3):
        name = f"fault/slow:{attempt}"
        p = fenv.root / f"slow{attempt}.tar"
        ib.write_docker_archive(p, _slow_image(str(attempt)), [name])
        r = fenv.rb("load", "-i", p, timeout=60)
        assert r.rc == 0, r
        proc = fenv.popen("run", "--rm", name, "true")
        rec = _wait_for_file(fenv.store / "containers", "*/image", timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert rec is not None, "run never wrote the in-use record"
        cid = rec.parent.name
        if not (fenv.state / cid / "state.json").exists():
            break
        # Killed too late (the container got registered): again, with an image not unpacked yet.
        fenv.rb("rm", "-f", cid)
    else:
        pytest.fail("could not kill `run` between its in-use record and its registration")
    assert rec.exists(), "the record of the killed run is gone: the kill came too late to test this"
    assert json.loads(rec.read_text())["owner"]["pid"] == proc.pid
    _no_leftovers(fenv)
    r = fenv.rb("ps", "-aq")
    assert r.rc == 0 and r.out.strip() == "", r
    r = fenv.rb("images", "--format", "json")
    assert r.rc == 0 and [row["Containers"] for row in json.loads(r.out)] == [0] * (attempt + 1), r
    for i in range(attempt + 1):
        r = fenv.rb("rmi", f"fault/slow:{i}", timeout=120)
        assert r.rc == 0, f"the killed run's record still holds the image:{r}"
    _store_empty(fenv)


def test_sigkill_of_load_at_every_point(fenv):
    # A 24 MB layer of random bytes, so the load takes a while.
    big = ib.Layer().file("big", os.urandom(24 << 20)).bytes()
    img = ib.Image([hostile.base_layer(), big], {"architecture": hostile._arch(), "os": "linux",
                                                 "config": {"Cmd": ["/bin/sh"]}})
    archive = fenv.root / "big.tar"
    ib.write_oci(archive, img, "fault/big:1", compression=None)
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25):
        p = fenv.popen("load", "-i", archive)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    _no_leftovers(fenv)
    r = fenv.rb("load", "-i", archive, timeout=60)
    assert r.rc == 0, r
    r = fenv.rb("run", "--rm", "fault/big:1", "sh", "-c", "wc -c < /big", timeout=60)
    assert r.rc == 0 and r.out.strip() == str(24 << 20), r
    # Partial blobs are only ever in tmp/ (never under their digest), and GC removes them.
    for b in (fenv.store / "blobs/sha256").iterdir():
        h = hashlib.sha256()
        with open(b, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        assert h.hexdigest() == b.name, f"blob {b.name} is not whole"
    r = fenv.rb("image", "prune")
    assert r.rc == 0, r
    assert list((fenv.store / "tmp").iterdir()) == []


# ---------------------------------------------------------------------------
# commit and pull


def _blobs_whole(store: pathlib.Path):
    """Every blob in the store is whole (hashes to its name)."""
    for b in (store / "blobs/sha256").iterdir():
        h = hashlib.sha256()
        with open(b, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        assert h.hexdigest() == b.name, f"blob {b.name} is not whole"


def _images_whole(store: pathlib.Path) -> list[str]:
    """Every image the index names has its manifest, config and layers, at their sizes.
    Returns the names."""
    names = []
    idx = json.loads((store / "index.json").read_text())
    for d in idx["manifests"]:
        blob = lambda dg: store / "blobs/sha256" / dg.split(":")[1]  # noqa: E731
        m = json.loads(blob(d["digest"]).read_bytes())
        for x in [m["config"], *m["layers"]]:
            assert blob(x["digest"]).is_file(), f"image {d} lacks blob {x['digest']}"
            assert blob(x["digest"]).stat().st_size == x["size"], f"blob {x['digest']} has the wrong size"
        names.append(d.get("annotations", {}).get("org.opencontainers.image.ref.name", ""))
    return names


BIG = 12 << 20


def _container_with_changes(fenv, name: str, idmap=()):
    """A stopped container whose writable layer holds 12 MB of random bytes and 1500 files."""
    p = fenv.root / "base.tar"
    ib.write_docker_archive(p, ib.Image([hostile.base_layer()], {"architecture": hostile._arch(), "os": "linux",
                                                                   "config": {"Cmd": ["/bin/sh"]}}),
                            ["fault/base:1"])
    r = fenv.rb("load", "-i", p, timeout=60)
    assert r.rc == 0, r
    r = fenv.rb("run", "-d", "--name", name, *idmap, "fault/base:1", "sh", "-c",
                f"head -c {BIG} /dev/urandom > /big && mkdir /many && "
                "i=0; while [ $i -lt 1500 ]; do echo $i > /many/f$i; i=$((i+1)); done", timeout=60)
    assert r.rc == 0, r
    r = fenv.rb("wait", name, timeout=60)
    assert r.rc == 0 and r.out.strip() == "0", r


def test_sigkill_of_commit_at_every_point(fenv):
    _container_with_changes(fenv, "changed")
    # Killed at points spread over a commit's whole length (measured here first).
    t0 = time.monotonic()
    r = fenv.rb("commit", "changed", "fault/commit:timed", timeout=60)
    assert r.rc == 0, r
    took = time.monotonic() - t0
    for i, frac in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95)):
        p = fenv.popen("commit", "changed", f"fault/commit:{i}")
        time.sleep(frac * took)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    _no_leftovers(fenv)
    # Some commits were killed while they wrote their layer (its partial file is in tmp/).
    assert [p.name for p in (fenv.store / "tmp").iterdir() if p.name.startswith("commit-")] != [], \
        f"no kill landed in the middle of a commit (one takes {took:.2f}s)"
    # Only whole blobs under their digests; every named image complete (a commit killed
    # after it recorded the image made a whole image); partial layers only in tmp/.
    _blobs_whole(fenv.store)
    _images_whole(fenv.store)
    # No lock left behind: the next commit works, at once, and its image has the changes.
    r = fenv.rb("commit", "changed", "fault/commit:after", timeout=60)
    assert r.rc == 0, r
    r = fenv.rb("run", "--rm", "fault/commit:after", "sh", "-c", "wc -c < /big; cat /many/f1499", timeout=30)
    assert r.rc == 0 and r.out.split() == [str(BIG), "1499"], r
    # What the killed commits left in tmp/ goes with the next prune.
    r = fenv.rb("image", "prune")
    assert r.rc == 0, r
    assert list((fenv.store / "tmp").iterdir()) == []
    _blobs_whole(fenv.store)
    _images_whole(fenv.store)


@pytest.mark.skipif(REGISTRY is None, reason="docker-registry not installed (tests/setup-root.sh installs it)")
def test_sigkill_of_pull_at_every_point(fenv):
    reg = Registry(fenv.root / "registry", tls=False)
    try:
        big = ib.Layer().file("big", os.urandom(24 << 20)).bytes()
        img = ib.Image([hostile.base_layer(), big], {"architecture": hostile._arch(), "os": "linux",
                                                     "config": {"Cmd": ["/bin/sh"]}})
        ref = f"{reg.host}/fault/big:1"
        archive = fenv.root / "big.tar"
        ib.write_oci(archive, img, ref, compression="gzip")
        assert fenv.rb("load", "-i", archive, timeout=60).rc == 0
        r = fenv.rb("push", ref, timeout=120)
        assert r.rc == 0, r
        # Pull into a second store, killed at points from "connecting" to "unpacking".
        other = fenv.root / "other"
        env2 = {**fenv.env, "ROOTBOX_ROOT": str(other)}
        t0 = time.monotonic()
        r = run([fenv.bins.rootbox, "pull", "-q", ref], env=env2, timeout=120)
        assert r.rc == 0, r
        took = time.monotonic() - t0
        r = run([fenv.bins.rootbox, "rmi", ref], env=env2, timeout=60)
        assert r.rc == 0, r
        for frac in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95):
            p = fenv.popen("pull", "-q", ref, store=other)
            time.sleep(frac * took)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        _no_leftovers(fenv)
        # Some pulls were killed while they downloaded or unpacked (partial files are in tmp/
        # or layers/*/.tmp-*, never under a digest).
        partial = list((other / "tmp").iterdir()) + list(other.glob("layers/*/.tmp-*"))
        assert partial != [], f"no kill landed in the middle of a pull (one takes {took:.2f}s)"
        _blobs_whole(other)
        _images_whole(other)
        # No stale lock, nothing half-written taken for whole: the next pull works and the
        # image runs with its content.
        r = run([fenv.bins.rootbox, "pull", "-q", ref], env=env2, timeout=120)
        assert r.rc == 0, r
        r = run([fenv.bins.rootbox, "run", "--rm", ref, "sh", "-c", "wc -c < /big"], env=env2, timeout=60)
        assert r.rc == 0 and r.out.strip() == str(24 << 20), r
        r = run([fenv.bins.rootbox, "image", "prune"], env=env2, timeout=60)
        assert r.rc == 0, r
        assert list((other / "tmp").iterdir()) == []
        assert list(other.glob("layers/*/.tmp-*")) == []
        _blobs_whole(other)
        r = run([fenv.bins.rootbox, "rmi", ref], env=env2, timeout=60)
        assert r.rc == 0, r
    finally:
        reg.stop()


# ---------------------------------------------------------------------------
# a full disk, a filesystem without xattrs


def _in_private_mount_ns(bins, script: str, env: dict, timeout=120):
    """Runs SCRIPT (sh) in a new mount namespace, as root (`unshare -m`) or, unprivileged, as
    the root of a new user namespace (`unshare -Urm`), where mounting a tmpfs is allowed."""
    if UNSHARE is None:
        pytest.fail("unshare(1) is not installed (util-linux)")
    args = [UNSHARE, "-m"] if IS_ROOT else [UNSHARE, "-Urm"]
    return run([*args, "sh", "-c", script], env={**env, "RB": str(bins.rootbox)}, timeout=timeout)


def test_full_disk_during_load_and_unpack(bins, tmp_path, xdg_runtime_dir):
    """A store on a 6 MB tmpfs: loading a 16 MB layer, and unpacking a small gzip layer that
    expands to 16 MB, both fail naming ENOSPC; nothing half-written stays, and the store still
    loads and unpacks an image that fits."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    big = ib.Image([ib.Layer().file("random", os.urandom(16 << 20)).bytes()],
                   {"architecture": hostile._arch(), "os": "linux"})
    ib.write_oci(tmp_path / "big.tar", big, "disk/big:1", compression=None)
    bomb = ib.Image([ib.Layer().file("zeros", bytes(16 << 20)).bytes()], {"architecture": hostile._arch(), "os": "linux"})
    ib.write_oci(tmp_path / "expands.tar", bomb, "disk/expands:1", compression="gzip")
    small = ib.Image([ib.Layer().file("hello", b"fits\n").bytes()], {"architecture": hostile._arch(), "os": "linux"})
    ib.write_oci(tmp_path / "small.tar", small, "disk/small:1", compression="gzip")
    store = mnt / "store"
    script = f"""
        mount -t tmpfs -o size=6m tmpfs {mnt} || exit 99
        export ROOTBOX_ROOT={store}
        echo "== load big"; "$RB" load -i {tmp_path / 'big.tar'}; echo "rc=$?"
        echo "== tmp"; ls -A {store}/tmp; ls {store}/blobs/sha256 | wc -l
        echo "== load expands"; "$RB" load -i {tmp_path / 'expands.tar'}; echo "rc=$?"
        echo "== unpack expands"; "$RB" image unpack --idmap single disk/expands:1; echo "rc=$?"
        echo "== layers"; ls -A {store}/layers/single
        echo "== small"; "$RB" load -i {tmp_path / 'small.tar'} && d=$("$RB" image unpack --idmap single disk/small:1) \
            && cat "$d/hello"; echo "rc=$?"
        echo "== df"; df -k {mnt} | tail -1
    """
    r = _in_private_mount_ns(bins, script, {"XDG_RUNTIME_DIR": xdg_runtime_dir})
    if "rc=" not in r.out and r.rc == 99:
        pytest.fail(f"cannot mount a tmpfs here:{r}")
    parts = {}
    for chunk in r.out.split("== ")[1:]:
        head, _, body = chunk.partition("\n")
        parts[head] = body
    # Loading the big layer: ENOSPC, named, and no partial blob kept.
    assert parts["load big"].strip().endswith("rc=125"), r
    assert "No space left on device" in r.err, r
    # (tmp/ is empty; the blobs stored before the layer, e.g. the config, are whole ones.)
    assert parts["tmp"].split()[:-1] == [], f"partial blobs left:{r}"
    # Unpacking what expands past the free space: ENOSPC naming the entry, no layer kept.
    assert parts["load expands"].strip().endswith("rc=0"), r
    assert parts["unpack expands"].strip().endswith("rc=125"), r
    assert 'layer entry "zeros"' in r.err, r
    assert [x for x in parts["layers"].split() if not x.endswith(".lock")] == [], f"a half-written layer was kept:{r}"
    # The store still works for what fits.
    assert parts["small"].split()[-2:] == ["fits", "rc=0"], r
    # The tmpfs went with the namespace: nothing mounted on the host.
    with open("/proc/self/mountinfo") as f:
        assert str(mnt) not in f.read()


def test_full_disk_during_commit(fenv):
    """The store's tmp/ (where a commit writes its layer before storing it) on a 4 MB tmpfs,
    the container's changes 12 MB of random bytes: the commit fails naming ENOSPC and the
    file, leaves no partial layer, blob or image; with room again, the same commit works."""
    # (Unprivileged, the commit runs as the root of a user namespace of our own, where the
    # subordinate ids are not mapped: the container's files are all ours then.)
    _container_with_changes(fenv, "full", () if IS_ROOT else ("--idmap", "single"))
    blobs_before = sorted(p.name for p in (fenv.store / "blobs/sha256").iterdir())
    tmp = fenv.store / "tmp"
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {tmp} || exit 99
        echo "== commit"; "$RB" commit full disk/commit:1; echo "rc=$?"
        echo "== tmp"; ls -A {tmp}
    """
    r = _in_private_mount_ns(fenv.bins, script, fenv.env)
    if "rc=" not in r.out and r.rc == 99:
        pytest.fail(f"cannot mount a tmpfs here:{r}")
    parts = {}
    for chunk in r.out.split("== ")[1:]:
        head, _, body = chunk.partition("\n")
        parts[head] = body
    # (`commit` fails with 1, as Docker's does.)
    assert parts["commit"].strip().endswith("rc=1"), r
    assert "No space left on device" in r.err and f"cannot write {tmp}/commit-" in r.err, r
    assert "reading the writable layer" not in r.err, f"a full disk reported as a read error:{r}"
    assert parts["tmp"].split() == [], f"a partial layer was left:{r}"
    with open("/proc/self/mountinfo") as f:
        assert str(tmp) not in f.read()
    # Nothing of the failed commit in the store: no new blob, no image.
    assert sorted(p.name for p in (fenv.store / "blobs/sha256").iterdir()) == blobs_before
    assert list(tmp.iterdir()) == []
    assert "disk/commit:1" not in fenv.rb("images").out
    _images_whole(fenv.store)
    # With room again, the same commit works and the image has the changes.
    r = fenv.rb("commit", "full", "disk/commit:1", timeout=60)
    assert r.rc == 0, r
    r = fenv.rb("run", "--rm", "disk/commit:1", "sh", "-c", "wc -c < /big", timeout=30)
    assert r.rc == 0 and r.out.strip() == str(BIG), r


@pytest.mark.root_only
def test_store_without_user_xattrs_says_why(bins, tmp_path, xdg_runtime_dir):
    """ramfs keeps no user xattrs: a layer with an opaque directory cannot be stored in the
    overlay format there, and the error names the xattr and the reason (the README says to
    put the store on a filesystem with user xattrs: ext4, xfs, btrfs, tmpfs)."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    archive = tmp_path / "bb.tar"
    ib.write_docker_archive(archive, ib.busybox_image(), ["noxattr/bb:1"])
    script = f"""
        mount -t ramfs ramfs {mnt} || exit 99
        export ROOTBOX_ROOT={mnt}/store
        "$RB" load -i {archive} >/dev/null || exit 98
        "$RB" image unpack --idmap single noxattr/bb:1; echo "rc=$?"
        ls -A {mnt}/store/layers/single
    """
    r = _in_private_mount_ns(bins, script, {"XDG_RUNTIME_DIR": xdg_runtime_dir})
    assert r.rc == 0, r
    assert "rc=125" in r.out, r
    assert "user.overlay.opaque" in r.err and "Operation not supported" in r.err, r
    # The base layers unpacked; the one that needs the xattr was not kept half-done.
    kept = [x for x in r.out.split() if not x.startswith("rc=")]
    assert not [x for x in kept if x.startswith(".tmp-")], r
    assert len([x for x in kept if not x.endswith(".lock")]) < 3, r
