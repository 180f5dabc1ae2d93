"""Load (issue 12, part 5): 200 sequential and 50 concurrent `rootbox run --rm IMAGE`, then
nothing may have leaked: processes, the caller's fds, host mounts, state directories, the
store's per-container directories; and 50 concurrent first runs of an image that was never
unpacked leave exactly one correct copy of each layer.

Heavy: it runs once, as the unprivileged user (the case the product is for), not again as root.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import threading
import time

import pytest

import imagebuild as ib
from util import alive, descendants, processes_using, run, wait_until

IMG = "load/busybox:1"
FRESH = "load/fresh:1"


def _mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" ", 4)[4] for line in f)


@pytest.mark.unprivileged
def test_200_sequential_and_50_concurrent_leak_nothing(bins, xdg_runtime_dir):
    root = pathlib.Path(tempfile.mkdtemp(prefix="rbload-", dir="/tmp"))
    store, state = root / "store", root / "state"
    state.mkdir(mode=0o700)
    env = {"ROOTBOX_ROOT": str(store), "ROOTBOX_STATE_DIR": str(state), "XDG_RUNTIME_DIR": xdg_runtime_dir}

    def rb(*args, **kw):
        return run([bins.rootbox, *map(str, args)], env=env, **kw)

    try:
        img = ib.busybox_image()
        ib.write_docker_archive(root / "bb.tar", img, [IMG])
        assert rb("load", "-i", root / "bb.tar").rc == 0
        # Same content, another config: its own image whose layers are already there, and a
        # second archive with a fresh top layer nobody unpacked yet (for the concurrent part).
        fresh = ib.Image(img.layers + [ib.Layer().file("fresh", b"one copy\n").bytes()],
                         json.loads(img.config) | {"rootfs": None})
        ib.write_docker_archive(root / "fresh.tar", fresh, [FRESH])
        assert rb("load", "-i", root / "fresh.tar").rc == 0
        r = rb("run", "--rm", IMG, "true", timeout=60)  # unpack once
        assert r.rc == 0, r

        fds_before = sorted(os.listdir("/proc/self/fd"))
        mounts_before = _mounts()
        layers_before = sorted(p.name for p in store.glob("layers/*/*"))

        t0 = time.monotonic()
        for i in range(200):
            r = rb("run", "--rm", IMG, "true", timeout=30)
            assert r.rc == 0, f"run {i}:{r}"
        seq = time.monotonic() - t0

        results = [None] * 50

        def one(i):
            results[i] = rb("run", "--rm", FRESH, "sh", "-c", f"cat /fresh; echo {i}", timeout=180)

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conc = time.monotonic() - t0
        for i, r in enumerate(results):
            assert r.rc == 0 and r.out == f"one copy\n{i}\n", f"concurrent run {i}:{r}"
        print(f"\n200 sequential run --rm: {seq:.1f}s ({seq / 200 * 1000:.0f} ms each); "
              f"50 concurrent first runs: {conc:.1f}s")

        # Nothing leaked.
        wait_until(lambda: not [p for p in processes_using([store, state]) if alive(p)], timeout=10,
                   what="container processes to go")
        assert [p for p in descendants(os.getpid()) if alive(p)] == []
        assert sorted(os.listdir("/proc/self/fd")) == fds_before, "the caller's fds changed"
        assert _mounts() == mounts_before, "host mounts changed"
        assert [p for p in os.listdir(state) if not p.startswith(".")] == [], "state directories left"
        for sub in os.listdir(state):
            assert os.listdir(state / sub) == [], f"state left in {sub}"
        assert os.listdir(store / "containers") == [], "per-container store directories left"
        assert rb("ps", "-aq").out == ""
        # One copy of each layer: the old ones, plus exactly one for the fresh top layer.
        layers = sorted(p.name for p in store.glob("layers/*/*"))
        new = [x for x in layers if x not in layers_before]
        assert len([x for x in new if not x.endswith(".lock")]) == 1, new
        assert not [x for x in layers if x.startswith(".tmp-")], layers
        assert list((store / "tmp").iterdir()) == []
    finally:
        shutil.rmtree(store / "containers", ignore_errors=True)
        if (store / "index.json").exists():
            rb("image", "prune", "-a")
        shutil.rmtree(root, ignore_errors=True)
