"""Build real OCI/Docker images in Python (no registry, no docker): layers are tar
streams made with `tarfile`, written as a docker-archive (`docker save` format) or
an OCI image layout (directory or tar), with gzip or zstd layers when asked.

    img = busybox_image()            # 3 layers: base / whiteout / opaque dir
    write_docker_archive(path, img, ["test/busybox:1"])
    write_oci(path, img, "test/busybox:1", compression="gzip", as_dir=False)

Also the hostile layers of the unpack tests (`hostile_layer(kind, canary)`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile

MTIME = 1_700_000_000  # fixed, so builds are reproducible and mtimes checkable


def sha256(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Layer:
    """An uncompressed layer tar, built entry by entry."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode, uid=0, gid=0, mtime=MTIME, pax=None):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime
        if pax:
            ti.pax_headers = dict(pax)
        return ti

    def dir(self, name, mode=0o755, **kw):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name, data: bytes = b"", mode=0o644, **kw):
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name, target, **kw):
        ti = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name, target, **kw):
        ti = self._info(name, tarfile.LNKTYPE, 0o644, **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def chardev(self, name, major, minor, mode=0o666):
        ti = self._info(name, tarfile.CHRTYPE, mode)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def fifo(self, name, mode=0o644):
        self.tar.addfile(self._info(name, tarfile.FIFOTYPE, mode))
        return self

    def whiteout(self, path):
        d, base = os.path.split(path)
        return self.file(os.path.join(d, ".wh." + base) if d else ".wh." + base)

    def opaque(self, dirpath):
        return self.file(os.path.join(dirpath, ".wh..wh..opq"))

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def compress(data: bytes, how: str | None) -> bytes:
    if how in (None, "none"):
        return data
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        zstd = shutil.which("zstd")
        if not zstd:
            raise RuntimeError("zstd CLI not installed")
        return subprocess.run([zstd, "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True).stdout
    raise ValueError(how)


class Image:
    def __init__(self, layers: list[bytes], config: dict):
        self.layers = layers  # uncompressed tars, lowest first
        self.diff_ids = [sha256(b) for b in layers]
        config = dict(config)
        config["rootfs"] = {"type": "layers", "diff_ids": self.diff_ids}
        self.config = json.dumps(config, sort_keys=True).encode()
        self.config_digest = sha256(self.config)


def busybox_path() -> str:
    for c in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(c):
            return c
    raise RuntimeError("busybox-static is not installed")


def busybox_image(busybox: str | None = None) -> Image:
    """A real 3-layer image from busybox-static:

    1. base: /bin/busybox and one symlink per applet, /etc/passwd+group (root, app
       uid 1000, nobody), /etc/removeme, /opt/data/{a,b}, /home/app/owned (1000:1000),
       /usr/bin/suid (mode 4755), /tmp (1777), /root (0700), a fifo;
    2. deletes /etc/removeme (a whiteout) and adds /etc/layer2;
    3. replaces /opt/data by an opaque directory holding only c.
    """
    bb = pathlib.Path(busybox or busybox_path()).read_bytes()
    applets = subprocess.run(
        [busybox or busybox_path(), "--list-full"], stdout=subprocess.PIPE, check=True, text=True
    ).stdout.split()
    base = Layer()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "home", "proc", "sys", "dev",
              "run", "var", "mnt", "opt", "opt/data"):
        base.dir(d)
    base.dir("tmp", mode=0o1777)
    base.dir("var/tmp", mode=0o1777)
    base.dir("root", mode=0o700)
    base.file("bin/busybox", bb, mode=0o755)
    seen = {"bin/busybox"}
    for a in applets:
        if a not in seen:
            seen.add(a)
            base.symlink(a, "/bin/busybox")
    base.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
              b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    base.file("etc/group", b"root:x:0:\napp:x:1000:\nwheel:x:10:app\nnogroup:x:65534:\n")
    base.file("etc/removeme", b"gone in layer 2\n")
    base.file("opt/data/a", b"a\n").file("opt/data/b", b"b\n")
    base.dir("home/app", mode=0o750, uid=1000, gid=1000)
    base.file("home/app/owned", b"mine\n", uid=1000, gid=1000)
    base.file("usr/bin/suid", b"#!/bin/sh\n", mode=0o4755)
    base.hardlink("usr/bin/suid-link", "usr/bin/suid")
    base.fifo("run/fifo")
    l2 = Layer().dir("etc").whiteout("etc/removeme").file("etc/layer2", b"layer 2\n")
    l3 = Layer().dir("opt").dir("opt/data").opaque("opt/data").file("opt/data/c", b"c\n")
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "IMAGE_VAR=1"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.example": "rootbox-test"},
        },
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": "busybox base"},
            {"created": "2023-11-14T22:13:20Z", "created_by": "rm /etc/removeme"},
            {"created": "2023-11-14T22:13:20Z", "created_by": "replace /opt/data"},
        ],
    }
    return Image([base.bytes(), l2.bytes(), l3.bytes()], config)


def single_layer_image(layer: bytes, cmd=("/bin/sh",)) -> Image:
    return Image([layer], {
        "created": "2023-11-14T22:13:20Z",
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {"Cmd": list(cmd)},
    })


def _add(tar: tarfile.TarFile, name: str, data: bytes):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = MTIME
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def write_docker_archive(path, img: Image, repo_tags, compression=None):
    """`docker save` format: manifest.json, repositories, <hex>.json, <id>/layer.tar."""
    with tarfile.open(path, "w") as t:
        layer_paths = []
        for i, layer in enumerate(img.layers):
            d = hashlib.sha256((img.diff_ids[i] + str(i)).encode()).hexdigest()
            data = compress(layer, compression)
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            t.addfile(ti)
            _add(t, f"{d}/VERSION", b"1.0")
            _add(t, f"{d}/layer.tar", data)
            layer_paths.append(f"{d}/layer.tar")
        cfg_name = img.config_digest.split(":")[1] + ".json"
        _add(t, cfg_name, img.config)
        manifest = [{"Config": cfg_name, "RepoTags": list(repo_tags), "Layers": layer_paths}]
        _add(t, "manifest.json", json.dumps(manifest).encode())
        repos = {}
        for rt in repo_tags:
            name, tag = rt.rsplit(":", 1)
            repos.setdefault(name, {})[tag] = layer_paths[-1].split("/")[0]
        _add(t, "repositories", json.dumps(repos).encode())


def oci_blobs(img: Image, compression="gzip"):
    """(manifest bytes, {digest: bytes}) of an OCI image."""
    media = {None: "application/vnd.oci.image.layer.v1.tar", "none": "application/vnd.oci.image.layer.v1.tar",
             "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}[compression]
    blobs = {img.config_digest: img.config}
    layers = []
    for layer in img.layers:
        data = compress(layer, compression)
        d = sha256(data)
        blobs[d] = data
        layers.append({"mediaType": media, "digest": d, "size": len(data)})
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": img.config_digest, "size": len(img.config)},
        "layers": layers,
    }).encode()
    blobs[sha256(manifest)] = manifest
    return manifest, blobs


def write_oci(path, img: Image, ref: str | None, compression="gzip", as_dir=False):
    """An OCI image layout (directory, or tar when not as_dir) holding IMG named REF."""
    manifest, blobs = oci_blobs(img, compression)
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest), "size": len(manifest)}
    if ref:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [desc]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for d, b in blobs.items():
        files["blobs/sha256/" + d.split(":")[1]] = b
    if as_dir:
        p = pathlib.Path(path)
        for name, b in files.items():
            (p / name).parent.mkdir(parents=True, exist_ok=True)
            (p / name).write_bytes(b)
    else:
        with tarfile.open(path, "w") as t:
            for name, b in files.items():
                _add(t, name, b)
    return sha256(manifest)


# ---------------------------------------------------------------------------
# hostile layers

HOSTILE = [
    "dotdot", "absolute", "abs_symlink_write", "rel_symlink_dir_write", "hardlink_passwd",
    "hardlink_dotdot", "device", "symlink_loop", "deep_path", "deep_dirs", "overlay_xattr",
    "bad_whiteout", "whiteout_escape",
]


def hostile_layer(kind: str, canary: str) -> bytes:
    """A layer that tries to reach CANARY (an absolute directory outside the target)."""
    canary = canary.rstrip("/")
    rel_up = "../" * 40 + canary.lstrip("/")
    L = Layer()
    if kind == "dotdot":
        L.file("ok", b"fine").file(f"{rel_up}/pwned-dotdot", b"x")
    elif kind == "absolute":
        L.file(f"{canary}/pwned-absolute", b"x")
    elif kind == "abs_symlink_write":
        L.symlink("escape", canary).file("escape/pwned-abs-symlink", b"x")
    elif kind == "rel_symlink_dir_write":
        L.dir("a").symlink("a/up", "../../../../../../../../../../../../../.." + canary).file(
            "a/up/pwned-rel-symlink", b"x")
    elif kind == "hardlink_passwd":
        L.hardlink("passwd", "/etc/passwd")
    elif kind == "hardlink_dotdot":
        L.hardlink("passwd", "../../../../../../../../../etc/passwd")
    elif kind == "device":
        L.file("ok", b"fine").chardev("dev/mem", 1, 1).chardev("dev/null", 1, 3)
    elif kind == "symlink_loop":
        L.symlink("loop1", "loop2").symlink("loop2", "loop1").file("loop1/pwned-loop", b"x")
    elif kind == "deep_path":
        L.file("d/" * 10_000 + "deep", b"x")
    elif kind == "deep_dirs":
        p = ""
        for _ in range(3000):
            p += "d/"
            L.dir(p)
    elif kind == "overlay_xattr":
        L.dir("dir", pax={"SCHILY.xattr.user.overlay.opaque": "y"}).file(
            "f", b"x", pax={"SCHILY.xattr.user.overlay.redirect": "/etc", "SCHILY.xattr.user.test": "kept"})
    elif kind == "bad_whiteout":
        L.file("sub/.wh..", b"")
    elif kind == "whiteout_escape":
        L.file(f"{rel_up}/.wh.victim", b"")
    else:
        raise ValueError(kind)
    return L.bytes()
