"""Registries: pull, push, login/logout against Debian's `docker-registry` (the CNCF
Distribution server) on 127.0.0.1, plain HTTP and TLS (a CA made here) with htpasswd auth;
interop with skopeo; corrupt blobs; multi-arch indexes; the errors users see."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pty
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

import imagebuild as ib
from util import run

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "lib"))
import registry_server  # noqa: E402  (tests/lib: shared with tests/python)
from registry_server import free_port  # noqa: E402

REGISTRY = shutil.which("docker-registry") or (
    "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None)
SKOPEO = shutil.which("skopeo")
OPENSSL = shutil.which("openssl")
HTPASSWD = shutil.which("htpasswd")

pytestmark = pytest.mark.skipif(REGISTRY is None, reason="docker-registry not installed (tests/setup-root.sh installs it)")

USER, PASSWORD = "alice", "s3cret-pw"


class Registry:
    """A docker-registry serving from a private directory; not a child of the test process
    (started through a shell that exits), so the per-test stray-process check ignores it."""

    def __init__(self, base: pathlib.Path, tls: bool):
        self.base = base
        self.storage = base / "storage"
        self.storage.mkdir(parents=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        cfg = [
            "version: 0.1",
            "log:", "  level: warn",
            "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
            "  delete:", "    enabled: true",
            "http:", f"  addr: 127.0.0.1:{self.port}",
        ]
        if tls:
            self.certs = base / "certs"
            self.certs.mkdir()
            make_ca(base, self.certs)
            cfg += ["  tls:", f"    certificate: {base / 'server.crt'}", f"    key: {base / 'server.key'}"]
            pw = subprocess.run([HTPASSWD, "-Bbn", USER, PASSWORD], stdout=subprocess.PIPE, check=True).stdout
            (base / "htpasswd").write_bytes(pw)
            cfg += ["auth:", "  htpasswd:", "    realm: rootbox-test", f"    path: {base / 'htpasswd'}"]
        (base / "config.yml").write_text("\n".join(cfg) + "\n")
        self.pid = registry_server.start(REGISTRY, base / "config.yml", base / "registry.log", self.port)

    def stop(self):
        registry_server.stop(self.pid)

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def blob_file(self, digest: str) -> pathlib.Path:
        hexd = digest.split(":")[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    # The Distribution API, for what rootbox has no command for (plain registry only).
    def put_blob(self, repo: str, data: bytes) -> str:
        d = ib.sha256(data)
        req = urllib.request.Request(self.url(f"/v2/{repo}/blobs/uploads/"), method="POST", data=b"")
        with urllib.request.urlopen(req) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = self.url(loc)
        sep = "&" if "?" in loc else "?"
        req = urllib.request.Request(f"{loc}{sep}digest={d}", method="PUT", data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 201, r.status
        return d

    def put_manifest(self, repo: str, ref: str, body: bytes, media: str) -> str:
        req = urllib.request.Request(self.url(f"/v2/{repo}/manifests/{ref}"), method="PUT", data=body,
                                     headers={"Content-Type": media})
        with urllib.request.urlopen(req) as r:
            assert r.status == 201, r.status
        return ib.sha256(body)


def make_ca(base: pathlib.Path, certs: pathlib.Path):
    """A self-signed CA (certs/ca.crt) and a server certificate for 127.0.0.1 it signed."""
    def ossl(*args):
        subprocess.run([OPENSSL, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "ca.key"),
         "-out", str(certs / "ca.crt"), "-days", "2", "-subj", "/CN=rootbox test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "server.key"),
         "-out", str(base / "server.csr"), "-subj", "/CN=127.0.0.1")
    (base / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", str(base / "server.csr"), "-CA", str(certs / "ca.crt"),
         "-CAkey", str(base / "ca.key"), "-CAcreateserial", "-out", str(base / "server.crt"),
         "-days", "2", "-extfile", str(base / "ext.cnf"))


@pytest.fixture(scope="session")
def registry():
    base = pathlib.Path(tempfile.mkdtemp(prefix="rbreg-", dir="/tmp"))
    r = Registry(base, tls=False)
    yield r
    r.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_registry():
    if OPENSSL is None or HTPASSWD is None:
        pytest.fail("openssl and htpasswd (apache2-utils) are needed: tests/setup-root.sh installs them",
                    pytrace=False)
    base = pathlib.Path(tempfile.mkdtemp(prefix="rbregtls-", dir="/tmp"))
    r = Registry(base, tls=True)
    yield r
    r.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def stores(tmp_path, bins, xdg_runtime_dir):
    made = []

    def new(name="store"):
        d = tmp_path / name
        made.append(d)
        return d

    yield new
    for s in made:
        if (s / "index.json").exists():
            shutil.rmtree(s / "containers", ignore_errors=True)
            # The build cache too: its layers hold subordinate-id files only rootbox can remove.
            for cmd in (["builder", "prune"], ["image", "prune", "-a"]):
                run([bins.rootbox, *cmd], env={"ROOTBOX_ROOT": str(s), "XDG_RUNTIME_DIR": xdg_runtime_dir})


@pytest.fixture
def rb(bins, stores, tmp_path, xdg_runtime_dir):
    """rb(*args, store=PATH, env=...) -> Result: rootbox with a private store and auth file place."""
    default = stores()
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)

    def call(*args, store=None, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": str(xdg), "ROOTBOX_ROOT": str(store or default),
             "ROOTBOX_STATE_DIR": os.path.join(xdg_runtime_dir, "rootbox"),
             "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home/.config")}
        e.update(env or {})
        return run([bins.rootbox, *map(str, args)], env=e, **kw)

    call.store = default
    call.xdg = xdg
    call.new_store = stores
    return call


def unique_image(tag: str, arch: str | None = None) -> ib.Image:
    """The busybox image plus a layer only this test has (so no blob is shared by chance)."""
    base = ib.busybox_image()
    marker = ib.Layer().dir("etc").file("etc/marker", f"{tag} {time.time_ns()}\n".encode())
    if arch:
        marker.file("arch", arch.encode() + b"\n")
    cfg = json.loads(base.config)
    cfg.pop("rootfs")
    if arch:
        cfg["architecture"] = arch
    cfg["history"].append({"created": "2023-11-14T22:13:20Z", "created_by": "marker"})
    return ib.Image(base.layers + [marker.bytes()], cfg)


def load(rb, tmp_path, img: ib.Image, name: str, store=None) -> str:
    d = tmp_path / ("oci-" + hashlib.sha256(name.encode()).hexdigest()[:8])
    ib.write_oci(d, img, name, as_dir=True)
    r = rb("load", "-i", d, store=store)
    assert r.rc == 0, r
    return d


def inspect(rb, ref, store=None) -> dict:
    r = rb("image", "inspect", ref, store=store)
    assert r.rc == 0, r
    return json.loads(r.out)[0]


def test_push_rmi_pull_run_roundtrip(rb, registry, tmp_path):
    ref = f"{registry.host}/rt/busybox:1"
    load(rb, tmp_path, unique_image("rt"), ref)
    before = inspect(rb, ref)
    r = rb("push", ref)
    assert r.rc == 0, r
    # Every blob (4 layers + config) went up, with a plain progress line each.
    assert r.err.count(" done") == 5, r
    assert rb("rmi", ref).rc == 0
    assert rb("images", "-q").out.strip() == ""
    r = rb("pull", ref)
    assert r.rc == 0, r
    assert r.out.strip() == before["Id"], r
    assert r.err.count("Copying blob") >= 8, r  # start and end of each of the 4 layers
    after = inspect(rb, ref)
    assert after["Manifest"]["Digest"] == before["Manifest"]["Digest"]
    assert after["Id"] == before["Id"]
    assert after["RootFS"]["Layers"] == before["RootFS"]["Layers"]
    r = rb("run", "--rm", ref, "sh", "-c", "cat /etc/layer2 /etc/marker; ls /opt/data; test ! -e /etc/removeme")
    assert r.rc == 0, r
    assert r.out.splitlines()[0] == "layer 2"
    assert r.out.splitlines()[1].startswith("rt ")
    assert r.out.splitlines()[2:] == ["c"]
    # A second pull downloads nothing.
    r = rb("pull", ref)
    assert r.rc == 0, r
    assert r.err.count("already exists") == 4, r


def test_pull_progress_bars_on_a_terminal(rb, registry, tmp_path, bins):
    ref = f"{registry.host}/tty/busybox:1"
    load(rb, tmp_path, unique_image("tty"), ref)
    assert rb("push", "-q", ref).rc == 0
    fresh = rb.new_store("fresh")
    master, slave = pty.openpty()
    env = dict(os.environ, ROOTBOX_ROOT=str(fresh), XDG_RUNTIME_DIR=str(rb.xdg), TERM="xterm")
    p = subprocess.Popen([bins.rootbox, "pull", ref], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = p.communicate(timeout=60)
    os.close(master)
    assert p.returncode == 0, screen
    text = screen.decode(errors="replace")
    assert "Copying blob" in text and "[" in text and "]" in text and "done" in text, text
    assert out.decode().strip().startswith("sha256:")


def test_quiet_pull_prints_only_the_id(rb, registry, tmp_path):
    ref = f"{registry.host}/quiet/busybox:1"
    load(rb, tmp_path, unique_image("quiet"), ref)
    assert rb("push", "-q", ref).rc == 0
    fresh = rb.new_store("fresh")
    r = rb("pull", "-q", ref, store=fresh)
    assert r.rc == 0, r
    assert r.err == "", r
    assert r.out.strip() == inspect(rb, ref)["Id"]


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_skopeo_copy_into_registry_then_rootbox_pull(rb, registry, tmp_path):
    img = unique_image("skopeo-in")
    d = tmp_path / "layout"
    ib.write_oci(d, img, "x", as_dir=True)
    ref = f"{registry.host}/skopeo/in:1"
    r = run([SKOPEO, "--insecure-policy", "copy", "--dest-tls-verify=false", f"oci:{d}:x", f"docker://{ref}"])
    assert r.rc == 0, r
    r = rb("pull", ref)
    assert r.rc == 0, r
    assert r.out.strip() == img.config_digest
    r = rb("run", "--rm", ref, "cat", "/etc/marker")
    assert r.rc == 0 and r.out.startswith("skopeo-in "), r


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_rootbox_push_then_skopeo_inspect_and_copy(rb, registry, tmp_path):
    ref = f"{registry.host}/skopeo/out:2"
    img = unique_image("skopeo-out")
    load(rb, tmp_path, img, ref)
    r = rb("push", ref)
    assert r.rc == 0, r
    mine = inspect(rb, ref)
    r = run([SKOPEO, "inspect", "--tls-verify=false", f"docker://{ref}"])
    assert r.rc == 0, r
    info = json.loads(r.out)
    assert info["Digest"] == mine["Manifest"]["Digest"]
    assert info["Layers"] == [layer["digest"] for layer in mine["Manifest"]["Layers"]]
    r = run([SKOPEO, "inspect", "--tls-verify=false", "--config", f"docker://{ref}"])
    assert r.rc == 0 and json.loads(r.out)["rootfs"]["diff_ids"] == img.diff_ids, r
    out = tmp_path / "copied"
    r = run([SKOPEO, "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:x"])
    assert r.rc == 0, r
    assert (out / "blobs/sha256" / img.config_digest.split(":")[1]).exists()


def test_push_to_another_repository_mounts_blobs(rb, registry, tmp_path):
    a = f"{registry.host}/mount/a:1"
    b = f"{registry.host}/mount/b:1"
    load(rb, tmp_path, unique_image("mount"), a)
    assert rb("push", "-q", a).rc == 0
    assert rb("tag", a, b).rc == 0
    r = rb("push", b)
    assert r.rc == 0, r
    assert r.err.count("mounted from another repository") == 5, r
    # and pushing again finds everything there already
    r = rb("push", b)
    assert r.rc == 0 and r.err.count("already exists") == 5, r


def test_corrupt_blob_on_the_registry_is_detected(rb, registry, tmp_path):
    ref = f"{registry.host}/corrupt/busybox:1"
    load(rb, tmp_path, unique_image("corrupt"), ref)
    assert rb("push", "-q", ref).rc == 0
    layer = inspect(rb, ref)["Manifest"]["Layers"][-1]["digest"]
    f = registry.blob_file(layer)
    assert f.exists(), f
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte off
    f.write_bytes(bytes(data))
    fresh = rb.new_store("fresh")
    r = rb("pull", ref, store=fresh)
    assert r.rc != 0, r
    assert "digest mismatch" in r.err and layer in r.err and ref in r.err and "discarded" in r.err, r
    assert rb("images", "-q", store=fresh).out.strip() == "", "an image was recorded"
    assert not (fresh / "blobs/sha256" / layer.split(":")[1]).exists(), "the bad blob was kept"
    assert list((fresh / "tmp").iterdir()) == [], "a partial download was left behind"
    # run --pull missing reports the same and leaves nothing either
    r = rb("run", "--rm", ref, "true", store=fresh)
    assert r.rc == 125 and "digest mismatch" in r.err, r


def test_multi_arch_index_picks_this_machine(rb, registry, tmp_path):
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    other = "arm64" if host != "arm64" else "amd64"
    repo = "multi/busybox"
    digests = {}
    for arch in (other, host):  # the foreign one first, so "first entry" would be wrong
        ref = f"{registry.host}/{repo}:{arch}"
        load(rb, tmp_path, unique_image("multi", arch=arch), ref)
        assert rb("push", "-q", ref).rc == 0
        m = inspect(rb, ref)["Manifest"]
        digests[arch] = m
    # An attestation-like entry (unknown/unknown) first: never picked.
    manifests = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digests[other]["Digest"],
                  "platform": {"os": "unknown", "architecture": "unknown"}}]
    for arch in (other, host):
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": digests[arch]["Digest"], "platform": {"os": "linux", "architecture": arch}})
    # Sizes must be right: fetch each manifest's real size from the registry.
    for m in manifests:
        req = urllib.request.Request(registry.url(f"/v2/{repo}/manifests/{m['digest']}"), method="HEAD",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req) as resp:
            m["size"] = int(resp.headers["Content-Length"])
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()
    registry.put_manifest(repo, "multi", index, "application/vnd.oci.image.index.v1+json")
    ref = f"{registry.host}/{repo}:multi"
    fresh = rb.new_store("fresh")
    r = rb("pull", ref, store=fresh)
    assert r.rc == 0, r
    got = inspect(rb, ref, store=fresh)
    assert got["Architecture"] == host
    assert got["Manifest"]["Digest"] == digests[host]["Digest"]
    r = rb("run", "--rm", ref, "cat", "/arch", store=fresh)
    assert r.rc == 0 and r.out.strip() == host, r
    # --platform picks another entry; one the index lacks is a clear error.
    r = rb("pull", "--platform", f"linux/{other}", ref, store=fresh)
    assert r.rc == 0, r
    assert inspect(rb, ref, store=fresh)["Architecture"] == other
    r = rb("pull", "--platform", "linux/s390x", ref, store=fresh)
    assert r.rc != 0 and "linux/s390x" in r.err and f"linux/{host}" in r.err and ref in r.err, r


def test_clear_errors(rb, registry, tmp_path):
    r = rb("pull", f"{registry.host}/no/such-image:1")
    assert r.rc == 125 and "unknown image" in r.err and f"{registry.host}/no/such-image:1" in r.err, r
    ref = f"{registry.host}/errors/busybox:1"
    load(rb, tmp_path, unique_image("errors"), ref)
    assert rb("push", "-q", ref).rc == 0
    r = rb("pull", f"{registry.host}/errors/busybox:nope")
    assert r.rc == 125 and "no tag \"nope\"" in r.err and "has 1" in r.err, r
    dead = free_port()
    r = rb("pull", f"127.0.0.1:{dead}/x/y:1")
    assert r.rc == 125 and "cannot reach the registry" in r.err and f"127.0.0.1:{dead}" in r.err, r
    r = rb("pull", "Bad//Ref")
    assert r.rc == 125 and "Bad//Ref" in r.err, r
    r = rb("push", "no-such-image:1", f"{registry.host}/x/y:1")
    assert r.rc == 125 and "no such image" in r.err, r
    # An OCI artifact (not a container image) is refused by media type.
    cfg = registry.put_blob("artifact/x", b"{}")
    layer = registry.put_blob("artifact/x", b"chart-bytes")
    man = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": layer, "size": 11}]}).encode()
    registry.put_manifest("artifact/x", "1", man, "application/vnd.oci.image.manifest.v1+json")
    fresh = rb.new_store("fresh")
    r = rb("pull", f"{registry.host}/artifact/x:1", store=fresh)
    assert r.rc == 125 and "unsupported media type" in r.err and "helm" in r.err, r
    assert rb("images", "-q", store=fresh).out.strip() == ""


def test_run_pulls_a_missing_image(rb, registry, tmp_path):
    ref = f"{registry.host}/runpull/busybox:1"
    load(rb, tmp_path, unique_image("runpull"), ref)
    assert rb("push", "-q", ref).rc == 0
    fresh = rb.new_store("fresh")
    r = rb("run", "--rm", "--pull", "never", ref, "true", store=fresh)
    assert r.rc == 125 and "no such image" in r.err, r
    r = rb("run", "--rm", ref, "cat", "/etc/marker", store=fresh)
    assert r.rc == 0 and r.out.startswith("runpull "), r
    assert "Copying blob" in r.err
    # present now: missing does not pull again, always does
    r = rb("run", "--rm", ref, "true", store=fresh)
    assert r.rc == 0 and "Copying blob" not in r.err, r
    r = rb("run", "--rm", "--pull", "always", ref, "true", store=fresh)
    assert r.rc == 0 and "already exists" in r.err, r
    r = rb("run", "--rm", "--pull", "sometimes", ref, "true", store=fresh)
    assert r.rc != 0 and "sometimes" in r.err, r


def test_tls_registry_with_auth(rb, tls_registry, tmp_path):
    reg = tls_registry
    ref = f"{reg.host}/secure/busybox:1"
    load(rb, tmp_path, unique_image("tls"), ref)
    # An unknown CA is refused, naming what to do.
    r = rb("push", ref)
    assert r.rc == 125 and "TLS error" in r.err and "--cert-dir" in r.err and reg.host in r.err, r
    # Trusted, but not logged in.
    r = rb("push", "--cert-dir", reg.certs, ref)
    assert r.rc == 125 and "unauthorized" in r.err and ref in r.err, r
    # Wrong password: a clear error, nothing stored.
    r = rb("login", "--cert-dir", reg.certs, "-u", USER, "-p", "wrong", reg.host)
    assert r.rc == 125 and "wrong user name or password" in r.err and reg.host in r.err, r
    auth = rb.xdg / "containers/auth.json"
    assert not auth.exists()
    r = rb("login", "--cert-dir", reg.certs, "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
    assert r.rc == 0 and "Login Succeeded" in r.out, r
    assert oct(auth.stat().st_mode & 0o777) == "0o600"
    assert reg.host in json.loads(auth.read_text())["auths"]
    r = rb("push", "--cert-dir", reg.certs, ref)
    assert r.rc == 0, r
    fresh = rb.new_store("fresh")
    r = rb("pull", ref, store=fresh, env={"ROOTBOX_CERT_DIR": str(reg.certs)})
    assert r.rc == 0, r
    r = rb("run", "--rm", ref, "cat", "/etc/marker", store=fresh)
    assert r.rc == 0 and r.out.startswith("tls "), r
    # --tls-verify=false needs no CA.
    r = rb("pull", "-q", "--tls-verify=false", ref, store=rb.new_store("fresh2"))
    assert r.rc == 0, r
    # Logged out: unauthorised again.
    r = rb("logout", reg.host)
    assert r.rc == 0 and reg.host in r.out, r
    r = rb("pull", "--cert-dir", reg.certs, ref, store=rb.new_store("fresh3"))
    assert r.rc == 125 and "unauthorized" in r.err, r
    r = rb("logout", reg.host)
    assert r.rc == 125 and "not logged in" in r.err, r
    # Docker's ~/.docker/config.json is read too; --creds overrides.
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    import base64
    (home / ".docker/config.json").write_text(json.dumps(
        {"auths": {reg.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    r = rb("pull", "-q", "--cert-dir", reg.certs, ref, store=rb.new_store("fresh4"))
    assert r.rc == 0, r
    r = rb("pull", "-q", "--cert-dir", reg.certs, "--creds", f"{USER}:nope", ref, store=rb.new_store("fresh5"))
    assert r.rc == 125 and "unauthorized" in r.err, r


def test_insecure_registry_needs_tls_verify_false_or_registries_conf(rb, registry, tmp_path):
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        addr = None
    if addr != "127.0.0.1" or name == "localhost":
        pytest.skip(f"the host name {name!r} does not resolve to 127.0.0.1 ({addr})")
    ref = f"{registry.host}/insecure/busybox:1"
    load(rb, tmp_path, unique_image("insecure"), ref)
    assert rb("push", "-q", ref).rc == 0
    other = f"{name}:{registry.port}/insecure/busybox:1"
    r = rb("pull", other)
    assert r.rc == 125 and f"{name}:{registry.port}" in r.err, r
    r = rb("pull", "-q", "--tls-verify=false", other)
    assert r.rc == 0, r
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{name}:{registry.port}"\ninsecure = true\n')
    r = rb("pull", "-q", other, store=rb.new_store("fresh"), env={"CONTAINERS_REGISTRIES_CONF": str(conf)})
    assert r.rc == 0, r


def test_built_image_pushes_and_runs_after_a_pull(rb, registry, tmp_path):
    """Issue 8's last check: an image made by `rootbox build` (a RUN layer and an ADD layer on a
    local base) pushes to the registry, and a fresh store pulls it and runs it."""
    base = f"{registry.host}/built/base:1"
    load(rb, tmp_path, unique_image("built"), base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from the context\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nWORKDIR /app\nADD hello.txt /app/\n"
        "RUN echo built-by-run > /app/run.txt\nENV WHO=registry\n"
        'CMD ["sh", "-c", "cat /app/hello.txt /app/run.txt; echo $WHO"]\n')
    ref = f"{registry.host}/built/app:1"
    r = rb("build", "-t", ref, ctx)
    assert r.rc == 0, r
    built = inspect(rb, ref)
    r = rb("push", ref)
    assert r.rc == 0, r
    fresh = rb.new_store("fresh")
    r = rb("pull", ref, store=fresh)
    assert r.rc == 0, r
    pulled = inspect(rb, ref, store=fresh)
    assert pulled["Id"] == built["Id"]
    assert pulled["RootFS"]["Layers"] == built["RootFS"]["Layers"]
    r = rb("run", "--rm", ref, store=fresh)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["hello from the context", "built-by-run", "registry"], r
