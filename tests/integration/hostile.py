"""A corpus of hostile images (issue 12, part 2): crafted layers AND crafted manifests,
indexes, configs and archives, written as the docker-archive / OCI archives `rootbox load`
reads. Each case says what a user must see.

    for case in CASES:                      # name -> Case
        path = case.build(tmp_dir, canary)  # an archive (file or OCI layout directory)
        # `rootbox load -i path` (and, when case.run, `rootbox run --rm REF true`)

A case fails either at `load` (case.load_error is the text the error must hold) or when
its layers are unpacked by `run` (case.run_error), or it loads and runs with the hostile
part neutralised (both None). The CANARY is a host directory the case aims at: nothing
may ever appear there.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import pathlib
import tarfile
from typing import Callable

import imagebuild as ib

REF = "hostile/case:1"
# ROOTBOX_MAX_LAYER_SIZE the tar-bomb case runs with, and what its layer decompresses to.
BOMB_LIMIT = "8M"
BOMB_SIZE = 64 << 20


def _config(diff_ids, extra=None):
    cfg = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": _arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if extra:
        extra(cfg)
    return json.dumps(cfg).encode()


def _arch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


_BASE = {}


def base_layer() -> bytes:
    """busybox and its applets: enough to run `true` (cached: built once per session)."""
    if "b" not in _BASE:
        _BASE["b"] = ib.busybox_image().layers[0]
    return _BASE["b"]


def _desc(media, data, **kw):
    d = {"mediaType": media, "digest": ib.sha256(data), "size": len(data)}
    d.update(kw)
    return d


LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


class Oci:
    """An OCI layout under construction: blobs by digest, a manifest, an index; each part
    can be spoiled before `write`."""

    def __init__(self, layers: list[bytes], compression="gzip", config_edit=None):
        self.blobs: dict[str, bytes] = {}
        self.layer_descs = []
        diff_ids = []
        for plain in layers:
            data = ib.compress(plain, compression)
            diff_ids.append(ib.sha256(plain))
            self.blobs[ib.sha256(data)] = data
            self.layer_descs.append(_desc(LAYER_GZ if compression == "gzip" else LAYER_TAR, data))
        self.config = _config(diff_ids, config_edit)
        self.blobs[ib.sha256(self.config)] = self.config
        self.config_desc = _desc(CONFIG, self.config)
        self.manifest_edit: Callable[[dict], None] | None = None
        self.index_edit: Callable[[dict], None] | None = None
        self.extra_files: dict[str, bytes] = {}

    def write(self, path: pathlib.Path, as_dir=False, drop=()) -> pathlib.Path:
        m = {"schemaVersion": 2, "mediaType": MANIFEST, "config": dict(self.config_desc),
             "layers": [dict(d) for d in self.layer_descs]}
        if self.manifest_edit:
            self.manifest_edit(m)
        mb = json.dumps(m).encode()
        blobs = dict(self.blobs)
        blobs[ib.sha256(mb)] = mb
        idx = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [
            _desc(MANIFEST, mb, annotations={"org.opencontainers.image.ref.name": REF})]}
        if self.index_edit:
            self.index_edit(idx)
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(idx).encode()}
        for d, b in blobs.items():
            if d not in drop:
                files["blobs/sha256/" + d.split(":")[1]] = b
        files.update(self.extra_files)
        if as_dir:
            for name, b in files.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(b)
        else:
            with tarfile.open(path, "w") as t:
                for name, b in files.items():
                    _add(t, name, b)
        return path


def _add(t: tarfile.TarFile, name: str, data: bytes):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = ib.MTIME
    ti.mode = 0o644
    t.addfile(ti, io.BytesIO(data))


def _layer(kind: str, canary: str) -> bytes:
    return ib.hostile_layer(kind, canary)


# ---------------------------------------------------------------------------
# the cases


@dataclasses.dataclass
class Case:
    name: str
    build: Callable[[pathlib.Path, str], pathlib.Path]  # (dir to write in, canary) -> archive
    load_error: str | None = None  # the error `load` must give
    run_error: str | None = None  # else the error `run` must give (the layers unpack then)
    env: dict | None = None  # extra environment for load and run


CASES: list[Case] = []


def case(name, load_error=None, run_error=None, env=None):
    def deco(fn):
        CASES.append(Case(name, fn, load_error, run_error, env))
        return fn

    return deco


# --- layers: escapes through the unpack, inside a runnable image (run unpacks them) ---

def _layer_case(kind):
    def build(d: pathlib.Path, canary: str):
        return Oci([base_layer(), _layer(kind, canary)]).write(d / f"{kind}.tar")

    return build


case("layer-dotdot", run_error="climbs out of the layer root")(_layer_case("dotdot"))
case("layer-absolute-path")(_layer_case("absolute"))
case("layer-symlink-then-write-through")(_layer_case("abs_symlink_write"))
case("layer-relative-symlink-then-write-through")(_layer_case("rel_symlink_dir_write"))
case("layer-hardlink-to-host-file", run_error="does not exist in this layer")(_layer_case("hardlink_passwd"))
case("layer-hardlink-dotdot", run_error="climbs out of the layer root")(_layer_case("hardlink_dotdot"))
case("layer-whiteout-escaping-root", run_error="climbs out of the layer root")(_layer_case("whiteout_escape"))
case("layer-whiteout-dotdot-name", run_error="invalid whiteout name")(_layer_case("bad_whiteout"))


@case("layer-whiteout-of-parent-via-dotdot", run_error="climbs out of the layer root")
def _(d, canary):
    # `.wh.` of a name reached through `..` from a directory: whiting out ../../canary.
    L = ib.Layer().dir("a").file("a/../../" + "../" * 20 + canary.lstrip("/") + "/.wh.keep", b"")
    return Oci([base_layer(), L.bytes()]).write(d / "wh-parent.tar")


@case("layer-symlink-dir-then-whiteout-through-it")
def _(d, canary):
    # A symlink to the host directory, then a whiteout of a file "inside" it: the whiteout
    # must land inside the layer (the symlink resolves in the layer root), never on the host.
    L = ib.Layer().symlink("esc", canary).whiteout("esc/keep")
    return Oci([base_layer(), L.bytes()]).write(d / "wh-symlink.tar")


@case("layer-tar-bomb", run_error="exceeds the limit", env={"ROOTBOX_MAX_LAYER_SIZE": BOMB_LIMIT})
def _(d, canary):
    # 64 MiB of zeros (a 64 KiB gzip): over the 8 MiB limit set for the test.
    bomb = ib.Layer().file("zeros", bytes(BOMB_SIZE)).bytes()
    return Oci([base_layer(), bomb]).write(d / "bomb.tar")


@case("layer-many-entries", run_error="more than 2000 entries", env={"ROOTBOX_MAX_LAYER_ENTRIES": "2000"})
def _(d, canary):
    L = ib.Layer()
    for i in range(5000):
        L.file(f"f{i}")
    return Oci([base_layer(), L.bytes()]).write(d / "count.tar")


@case("layer-truncated-gzip", run_error="layer sha256:")
def _(d, canary):
    o = Oci([base_layer(), ib.Layer().file("big", bytes(range(256)) * 4096).bytes()])
    # Cut the gzip in half; the manifest names the digest of the cut blob (so it loads).
    good = o.layer_descs[1]
    cut = o.blobs.pop(good["digest"])[: good["size"] // 2]
    o.blobs[ib.sha256(cut)] = cut
    o.layer_descs[1] = _desc(LAYER_GZ, cut)
    return o.write(d / "truncated.tar")


@case("layer-diff-id-mismatch", run_error="but the image config says")
def _(d, canary):
    o = Oci([base_layer(), ib.Layer().file("x", b"x").bytes()],
            config_edit=lambda c: c["rootfs"]["diff_ids"].__setitem__(1, "sha256:" + "ab" * 32))
    return o.write(d / "diffid.tar")


# --- manifests, indexes, configs, archives ---------------------------------------

@case("manifest-missing-layer-blob", load_error="is missing from the archive")
def _(d, canary):
    o = Oci([base_layer()])
    return o.write(d / "missing.tar", drop=(o.layer_descs[0]["digest"],))


@case("manifest-missing-config-blob", load_error="is missing from the archive")
def _(d, canary):
    o = Oci([base_layer()])
    return o.write(d / "missing-config.tar", drop=(o.config_desc["digest"],))


@case("manifest-bad-digest-syntax", load_error="xyz")
def _(d, canary):
    o = Oci([base_layer()])
    o.manifest_edit = lambda m: m["layers"][0].__setitem__("digest", "sha256:xyz")
    return o.write(d / "bad-digest.tar")


@case("manifest-digest-path-traversal", load_error="../../")
def _(d, canary):
    o = Oci([base_layer()])
    # A digest that would name a file outside the layout if used as a path.
    o.manifest_edit = lambda m: m["layers"][0].__setitem__(
        "digest", "sha256:../../../../../../.." + canary + "/keep")
    return o.write(d / "digest-traversal", as_dir=True)


@case("manifest-unsupported-algorithm", load_error="md5")
def _(d, canary):
    o = Oci([base_layer()])
    o.manifest_edit = lambda m: m["layers"][0].__setitem__("digest", "md5:" + "0" * 32)
    return o.write(d / "md5.tar")


@case("blob-content-does-not-match-its-name", load_error="hashes to")
def _(d, canary):
    # A layer of its own (a blob the store already holds is not read again: it is known good).
    o = Oci([base_layer(), ib.Layer().file("corrupt-me", os.urandom(4096)).bytes()])
    dg = o.layer_descs[1]["digest"]
    data = bytearray(o.blobs[dg])
    data[len(data) // 2] ^= 0xFF
    o.blobs[dg] = bytes(data)
    return o.write(d / "corrupt", as_dir=True)


@case("manifest-giant-declared-layer-size", load_error="size")
def _(d, canary):
    o = Oci([base_layer()])
    o.manifest_edit = lambda m: m["layers"][0].__setitem__("size", 1 << 62)
    return o.write(d / "giant-size.tar")


@case("manifest-negative-size", load_error="size")
def _(d, canary):
    o = Oci([base_layer()])
    o.manifest_edit = lambda m: m["layers"][0].__setitem__("size", -1)
    return o.write(d / "neg-size.tar")


@case("manifest-layer-count-differs-from-config", load_error="diff ids")
def _(d, canary):
    o = Oci([base_layer()])
    o.manifest_edit = lambda m: m["layers"].append(dict(m["layers"][0]))
    return o.write(d / "count-mismatch.tar")


@case("index-points-at-missing-manifest", load_error="is missing from the archive")
def _(d, canary):
    o = Oci([base_layer()])
    o.index_edit = lambda i: i["manifests"][0].__setitem__("digest", "sha256:" + "cd" * 32)
    return o.write(d / "missing-manifest.tar")


@case("index-nested-too-deep", load_error="index")
def _(d, canary):
    # An index of an index of ... (10 levels) of the manifest.
    o = Oci([base_layer()])
    path = d / "nested"
    o.write(path, as_dir=True)
    idx = json.loads((path / "index.json").read_text())
    desc = idx["manifests"][0]
    for _ in range(10):
        nested = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
            {k: v for k, v in desc.items() if k != "annotations"}]}).encode()
        (path / "blobs/sha256" / ib.sha256(nested)[7:]).write_bytes(nested)
        desc = _desc(INDEX, nested, annotations={"org.opencontainers.image.ref.name": REF})
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]}))
    return path


@case("config-huge", load_error="larger than")
def _(d, canary):
    # A 20 MB config (env): over the store's limit for a JSON document.
    big = [f"V{i}=" + "x" * 200 for i in range(100_000)]
    o = Oci([base_layer()], config_edit=lambda c: c["config"].__setitem__("Env", big))
    return o.write(d / "huge-config.tar")


@case("config-deeply-nested", load_error="config")
def _(d, canary):
    o = Oci([base_layer()])
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    cfg = o.config[:-1] + b', "x": ' + deep + b"}"
    o.blobs.pop(o.config_desc["digest"])
    o.blobs[ib.sha256(cfg)] = cfg
    o.config_desc = _desc(CONFIG, cfg)
    o.config = cfg
    return o.write(d / "nested-config.tar")


@case("config-not-json", load_error="config")
def _(d, canary):
    o = Oci([base_layer()])
    junk = b"\x00\xffnot json at all"
    o.blobs.pop(o.config_desc["digest"])
    o.blobs[ib.sha256(junk)] = junk
    o.config_desc = _desc(CONFIG, junk)
    return o.write(d / "junk-config.tar")


@case("archive-member-climbs-out", load_error="climbs out of the archive")
def _(d, canary):
    o = Oci([base_layer()])
    o.extra_files["../../../../../../.." + canary + "/pwned"] = b"x"
    return o.write(d / "member-dotdot.tar")


@case("archive-gzip-truncated", load_error="")
def _(d, canary):
    o = Oci([base_layer()])
    plain = o.write(d / "whole.tar").read_bytes()
    gz = gzip.compress(plain, mtime=0)
    (d / "cut.tar.gz").write_bytes(gz[: len(gz) * 2 // 3])
    return d / "cut.tar.gz"


@case("docker-manifest-paths-outside-archive", load_error="climbs out of the archive")
def _(d, canary):
    img = ib.single_layer_image(base_layer())
    p = d / "docker-dotdot.tar"
    ib.write_docker_archive(p, img, [REF])
    # Rewrite manifest.json: the layer path climbs out, the config is an absolute host path.
    with tarfile.open(p) as t:
        members = {m.name: t.extractfile(m).read() if m.isfile() else None for m in t.getmembers()}
    m = json.loads(members["manifest.json"])
    m[0]["Layers"] = ["../../../../../../.." + canary + "/keep"]
    members["manifest.json"] = json.dumps(m).encode()
    with tarfile.open(p, "w") as t:
        for name, data in members.items():
            if data is not None:
                _add(t, name, data)
    return p


@case("docker-config-absolute-host-path", load_error="is missing from the archive")
def _(d, canary):
    img = ib.single_layer_image(base_layer())
    p = d / "docker-abs.tar"
    ib.write_docker_archive(p, img, [REF])
    with tarfile.open(p) as t:
        members = {m.name: t.extractfile(m).read() if m.isfile() else None for m in t.getmembers()}
    m = json.loads(members["manifest.json"])
    m[0]["Config"] = "/etc/passwd"
    members["manifest.json"] = json.dumps(m).encode()
    with tarfile.open(p, "w") as t:
        for name, data in members.items():
            if data is not None:
                _add(t, name, data)
    return p


NAMES = [c.name for c in CASES]
BY_NAME = {c.name: c for c in CASES}
