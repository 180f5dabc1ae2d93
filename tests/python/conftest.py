"""Fixtures of the Python module's tests: they use ``rootbox`` as INSTALLED (a wheel in a
virtualenv), never the source tree, with a busybox image imported into a store of their own.

Environment: ROOTBOX_BUSYBOX_ROOTFS (a busybox root filesystem; made with
tests/lib/mk-busybox-rootfs.sh when unset).

The ``registry`` fixture runs Debian's ``docker-registry`` (the CNCF Distribution server) on
127.0.0.1, plain HTTP with htpasswd authentication, from a private temporary directory, as
tests/integration/test_registry.py does."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

import rootbox

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "lib"))
import registry_server  # noqa: E402  (tests/lib: shared with tests/integration)

HERE = pathlib.Path(__file__).resolve().parent
IMAGE = "test/busybox:1"

REGISTRY_BIN = shutil.which("docker-registry") or (
    "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None)
HTPASSWD = shutil.which("htpasswd")
REGISTRY_USER, REGISTRY_PASSWORD = "pyuser", "py-s3cret"
AUTH = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}


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


class Registry:
    """A docker-registry on 127.0.0.1:<free port> with htpasswd auth (``AUTH``), serving from
    a private directory; started through a shell that exits, so it is nobody's child."""

    def __init__(self, base: pathlib.Path) -> None:
        self.port = registry_server.free_port()
        self.host = f"127.0.0.1:{self.port}"
        pw = subprocess.run([HTPASSWD, "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD],
                            stdout=subprocess.PIPE, check=True).stdout
        (base / "htpasswd").write_bytes(pw)
        (base / "config.yml").write_text("\n".join([
            "version: 0.1",
            "log:", "  level: warn",
            "storage:", "  filesystem:", f"    rootdirectory: {base / 'storage'}",
            "http:", f"  addr: {self.host}", "  secret: rootbox-python-tests",
            "auth:", "  htpasswd:", "    realm: rootbox-python", f"    path: {base / 'htpasswd'}",
        ]) + "\n")
        self.log = base / "registry.log"
        self.pid = registry_server.start(REGISTRY_BIN, base / "config.yml", self.log, self.port)

    def stop(self) -> None:
        registry_server.stop(self.pid)


@pytest.fixture(scope="session")
def registry():
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed (tests/setup-root.sh installs it)")
    if HTPASSWD is None:
        pytest.fail("htpasswd (apache2-utils) is needed for the registry's authentication: "
                    "tests/setup-root.sh installs it", pytrace=False)
    base = pathlib.Path(tempfile.mkdtemp(prefix="rbpyreg-", dir="/tmp"))
    r = Registry(base)
    yield r
    r.stop()
    shutil.rmtree(base, ignore_errors=True)
