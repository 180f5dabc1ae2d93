"""Fixtures of the Python module's tests: they use ``rootbox`` as INSTALLED (a wheel in a
virtualenv), never the source tree, with a busybox image imported into a store of their own.

Environment: ROOTBOX_BUSYBOX_ROOTFS (a busybox root filesystem; made with
tests/lib/mk-busybox-rootfs.sh when unset)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import tarfile

import pytest

import rootbox

HERE = pathlib.Path(__file__).resolve().parent
IMAGE = "test/busybox:1"


def pytest_report_header(config):
    return f"rootbox {rootbox.__version__} from {os.path.dirname(rootbox.__file__)}"


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> pathlib.Path:
    rootfs = os.environ.get("ROOTBOX_BUSYBOX_ROOTFS")
    work = tmp_path_factory.mktemp("image")
    if not rootfs:
        script = HERE.parent / "lib" / "mk-busybox-rootfs.sh"
        rootfs = str(work / "rootfs")
        subprocess.run([str(script), rootfs], check=True, stdout=subprocess.DEVNULL)
    tar = work / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    return tar


@pytest.fixture(scope="session")
def store(tmp_path_factory, busybox_tar) -> pathlib.Path:
    """A store holding IMAGE, shared by the session (images are read-only to the tests)."""
    d = tmp_path_factory.mktemp("store")
    rootbox.Client(root=d, state_dir=tmp_path_factory.mktemp("state0")).images.import_(
        busybox_tar, "test/busybox", "1", changes=["CMD [\"sh\"]"]
    )
    return d


@pytest.fixture
def client(store, tmp_path):
    """A client over the shared store and a state directory of the test's own; whatever the
    test leaves running is removed afterwards."""
    c = rootbox.Client(root=store, state_dir=tmp_path / "state")
    yield c
    for ct in c.containers.list(all=True):
        try:
            ct.remove(force=True)
        except rootbox.NotFound:
            pass


@pytest.fixture
def own_store_client(tmp_path, busybox_tar):
    """A client with a store of its own (for tests that change images)."""
    c = rootbox.Client(root=tmp_path / "store", state_dir=tmp_path / "state")
    c.images.import_(busybox_tar, "test/busybox", "1")
    yield c
    for ct in c.containers.list(all=True):
        try:
            ct.remove(force=True)
        except rootbox.NotFound:
            pass
