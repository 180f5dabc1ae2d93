"""Hand-made image layers for the layered-rootfs and volume tests, in the on-disk format of
the image store (see core/src/rootfs/mod.rs): a deleted file is a character device 0/0, a
replaced directory carries the xattr user.overlay.opaque=y.

Layer 1 is the busybox rootfs plus /data:
    /data/keep            "keep"   (deleted by layer 2)
    /data/old/a           "a"      (/data/old replaced by layer 2)
    /data/old/sub/c       "c"
    /data/same            "one"    (overwritten by layer 2)
Layer 2:
    /data/keep            whiteout
    /data/old/            opaque, holding b ("b")
    /data/same            "two"
    /data/new             "new"
    /etc/group            whiteout
The merged tree therefore has /data/{new,old/b,same="two"} and no /etc/group.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

from util import run

MERGED_DATA = ["new", "old", "old/b", "same"]
DRIVERS = ["overlay", "fuse-overlayfs", "vfs"]


def mknod_whiteout(path: pathlib.Path):
    """A char 0/0 device: directly, or inside `unshare -U -r` for an ordinary user."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    except PermissionError:
        pass
    r = subprocess.run(
        ["unshare", "-U", "-r", "mknod", str(path), "c", "0", "0"], capture_output=True, text=True
    )
    assert r.returncode == 0, f"cannot make a whiteout {path}: {r.stderr}"
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, f"{path} is not a whiteout"


def make_layers(base_rootfs: pathlib.Path, dest: pathlib.Path):
    """Returns [lower1, lower2] (lowest first) under DEST."""
    l1 = dest / "l1"
    shutil.copytree(base_rootfs, l1, symlinks=True)
    d = l1 / "data"
    (d / "old" / "sub").mkdir(parents=True)
    (d / "keep").write_text("keep\n")
    (d / "old" / "a").write_text("a\n")
    (d / "old" / "sub" / "c").write_text("c\n")
    (d / "same").write_text("one\n")

    l2 = dest / "l2"
    (l2 / "data" / "old").mkdir(parents=True)
    (l2 / "etc").mkdir()
    mknod_whiteout(l2 / "data" / "keep")
    mknod_whiteout(l2 / "etc" / "group")
    (l2 / "data" / "old" / "b").write_text("b\n")
    os.setxattr(l2 / "data" / "old", "user.overlay.opaque", b"y")
    (l2 / "data" / "same").write_text("two\n")
    (l2 / "data" / "new").write_text("new\n")
    for p in (l1, l2):
        os.chmod(p, 0o755)
    return [l1, l2]


def tree_digest(root: pathlib.Path) -> str:
    """A digest of names, types, modes and contents under ROOT (not following symlinks)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = pathlib.Path(dirpath) / name
            st = os.lstat(p)
            h.update(f"{p.relative_to(root)} {st.st_mode:o} {st.st_rdev}\n".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(p.read_bytes())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
    return h.hexdigest()


class Box:
    """One container's writable layer over the shared lowers: upper, work and mount point."""

    def __init__(self, lowers, base: pathlib.Path):
        self.lowers = lowers
        self.upper = base / "upper"
        self.work = base / "work"
        self.mnt = base / "mnt"
        for p in (self.upper, self.work, self.mnt):
            p.mkdir(parents=True)

    def opts(self, driver=None):
        spec = "lower={},upper={},work={}".format(":".join(map(str, self.lowers)), self.upper, self.work)
        o = ["--rootfs", str(self.mnt), "--rootfs-overlay", spec]
        if driver:
            o += ["--storage-driver", driver]
        return o


@pytest.fixture
def lowers(base_rootfs, tmp_path):
    return make_layers(base_rootfs, tmp_path / "layers")


@pytest.fixture
def store(tmp_path):
    """A private store (ROOTBOX_ROOT) for volumes and the overlay probe cache."""
    d = tmp_path / "store"
    d.mkdir()
    return d


@pytest.fixture
def rb(rootbox, store):
    """rootbox(*args) with the private store."""

    def call(*args, env=None, **kw):
        e = {"ROOTBOX_ROOT": str(store)}
        e.update(env or {})
        return rootbox(*args, env=e, **kw)

    return call


@pytest.fixture
def new_box(lowers, tmp_path):
    boxes = []

    def make():
        b = Box(lowers, tmp_path / f"box{len(boxes) + 1}")
        boxes.append(b)
        return b

    yield make
    # The overlay leaves a mode-000 directory in its work dir: open it up so the test's
    # temporary directory can be removed.
    for b in boxes:
        for dirpath, dirnames, _ in os.walk(b.work):
            for d in dirnames:
                try:
                    os.chmod(os.path.join(dirpath, d), 0o700)
                except OSError:
                    pass


def fuse_usable():
    if not shutil.which("fuse-overlayfs"):
        return "fuse-overlayfs is not installed"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"/dev/fuse cannot be opened ({e}); tests/setup-root.sh makes it 0666"
    return None


def require_driver(driver):
    if driver == "fuse-overlayfs":
        why = fuse_usable()
        if why:
            pytest.skip(why)


__all__ = [
    "Box",
    "DRIVERS",
    "MERGED_DATA",
    "lowers",
    "make_layers",
    "new_box",
    "rb",
    "require_driver",
    "run",
    "store",
    "tree_digest",
]
