"""The image store: load/save/import in docker-archive and OCI forms, the unpacked
layer format (overlay whiteouts, opaque dirs, owners, modes), interop with skopeo,
hostile layers, concurrency, and the errors users see."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tarfile
import threading

import pytest

import imagebuild as ib
from util import HAS_SUBIDS, IS_ROOT, SUBGID, SUBUID, run

SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")
UNSHARE = shutil.which("unshare")


@pytest.fixture(scope="module")
def image():
    return ib.busybox_image()


@pytest.fixture
def store(tmp_path, bins, xdg_runtime_dir):
    d = tmp_path / "store"
    yield d
    # Layers unpacked with subordinate ids hold files we cannot delete ourselves: let
    # rootbox remove them (in the user namespace), whatever state the test left.
    for s in [d, *tmp_path.glob("fresh*"), *tmp_path.glob("store*")]:
        if (s / "index.json").exists():
            shutil.rmtree(s / "containers", ignore_errors=True)
            run([bins.rootbox, "image", "prune", "-a"], env={"ROOTBOX_ROOT": str(s), "XDG_RUNTIME_DIR": xdg_runtime_dir})


@pytest.fixture
def rb(bins, store, xdg_runtime_dir):
    """rb(*args, store=None, **kw): rootbox with a private image store."""

    def call(*args, store_dir=None, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": xdg_runtime_dir, "ROOTBOX_ROOT": str(store_dir or store)}
        e.update(env or {})
        return run([bins.rootbox, *args], env=e, **kw)

    return call


@pytest.fixture
def archives(tmp_path, image):
    d = tmp_path / "archives"
    d.mkdir()
    ib.write_docker_archive(d / "docker.tar", image, ["test/busybox:1", "test/busybox:latest"])
    ib.write_oci(d / "oci-gzip.tar", image, "test/busybox:gzip", compression="gzip")
    return d


def ok(r):
    assert r.rc == 0, f"command failed:{r}"
    return r


def unpack(rb, ref, *opts):
    r = ok(rb("image", "unpack", *opts, ref, timeout=60))
    dirs = [pathlib.Path(x) for x in r.out.split()]
    assert dirs and all(d.is_dir() for d in dirs), r
    return dirs


def inspect(rb, ref):
    r = ok(rb("image", "inspect", ref))
    data = json.loads(r.out)
    assert len(data) == 1
    return data[0]


def is_whiteout(p: pathlib.Path) -> bool:
    st = os.lstat(p)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# ---------------------------------------------------------------------------
# load / inspect / layer format


def test_load_docker_archive_lists_and_inspects(rb, archives, image):
    r = ok(rb("load", "-i", archives / "docker.tar"))
    assert "Loaded image: test/busybox:1" in r.out
    assert "Loaded image: test/busybox:latest" in r.out
    rows = json.loads(ok(rb("images", "--format", "json")).out)
    tags = sorted((x["Repository"], x["Tag"]) for x in rows)
    assert tags == [("test/busybox", "1"), ("test/busybox", "latest")]
    assert {x["ID"] for x in rows} == {image.config_digest[7:19]}
    table = ok(rb("images")).out.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:3] == ["test/busybox", "1", image.config_digest[7:19]] for line in table[1:])
    assert ok(rb("images", "-q")).out.split() == [image.config_digest[7:19]]

    info = inspect(rb, "test/busybox:1")
    assert info["Id"] == image.config_digest
    assert sorted(info["RepoTags"]) == ["test/busybox:1", "test/busybox:latest"]
    assert info["RootFS"]["Layers"] == image.diff_ids
    assert info["Config"]["Cmd"] == ["/bin/sh"]
    assert info["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert [h["created_by"] for h in info["History"]] == ["busybox base", "rm /etc/removeme", "replace /opt/data"]
    assert info["Created"] == "2023-11-14T22:13:20Z"
    assert info["RepoDigests"] and all("@sha256:" in d for d in info["RepoDigests"])
    # Resolution by id prefix, full id and docker.io-normalised names.
    assert inspect(rb, image.config_digest[7:15])["Id"] == image.config_digest
    assert inspect(rb, image.config_digest)["Id"] == image.config_digest
    assert inspect(rb, "docker.io/test/busybox:1")["Id"] == image.config_digest


def test_layers_unpack_to_overlay_format(rb, archives, image):
    ok(rb("load", "-i", archives / "docker.tar"))
    base, l2, l3 = unpack(rb, "test/busybox:1")
    # Keyed by diff id, lowest first.
    assert [d.parent.name for d in (base, l2, l3)] == [x[7:] for x in image.diff_ids]
    assert (base / "bin/busybox").stat().st_size > 100_000
    assert os.readlink(base / "bin/sh") == "/bin/busybox"
    assert (base / "etc/removeme").read_text() == "gone in layer 2\n"
    # Layer 2: the OCI whiteout became an overlay whiteout (char 0/0), no .wh. file kept.
    assert is_whiteout(l2 / "etc/removeme")
    assert not (l2 / "etc/.wh.removeme").exists()
    assert (l2 / "etc/layer2").read_text() == "layer 2\n"
    # Layer 3: the opaque marker became user.overlay.opaque=y.
    assert os.getxattr(l3 / "opt/data", "user.overlay.opaque") == b"y"
    assert sorted(os.listdir(l3 / "opt/data")) == ["c"]
    assert not (base / "opt/data/.wh..wh..opq").exists()
    # Modes, setuid, sticky, mtimes (directories too), hard links, fifos.
    assert stat.S_IMODE(os.lstat(base / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(base / "root").st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(base / "usr/bin/suid").st_mode) == 0o4755
    assert os.lstat(base / "usr/bin/suid").st_ino == os.lstat(base / "usr/bin/suid-link").st_ino
    assert stat.S_ISFIFO(os.lstat(base / "run/fifo").st_mode)
    assert os.lstat(base / "etc/passwd").st_mtime == ib.MTIME
    assert os.lstat(base / "etc").st_mtime == ib.MTIME
    assert os.lstat(base / "bin/sh").st_mtime == ib.MTIME
    # Unpacking again reuses the cache.
    again = unpack(rb, "test/busybox:1")
    assert again == [base, l2, l3]
    meta = json.loads((base.parent / "meta.json").read_text())
    assert meta["diff_id"] == image.diff_ids[0]


@pytest.mark.skipif(UNSHARE is None, reason="unshare(1) not installed")
def test_kernel_overlay_shows_the_right_tree(rb, archives, tmp_path):
    """The layer format is what a kernel overlay mounted with `userxattr` in a user
    namespace expects: the deleted file is gone, the opaque dir replaced."""
    ok(rb("load", "-i", archives / "docker.tar"))
    layers = unpack(rb, "test/busybox:1", "--idmap", "single")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    lower = ":".join(str(d) for d in reversed(layers))
    script = (
        f"mount -t overlay overlay -o userxattr,lowerdir={lower},upperdir={upper},workdir={work} {merged} && "
        f"ls {merged}/etc && echo --- && ls {merged}/opt/data && echo --- && cat {merged}/etc/layer2 && "
        f"rm {merged}/etc/passwd && umount {merged}"
    )
    r = run([UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", script])
    assert r.rc == 0, r
    etc, data, l2 = r.out.split("---\n")
    assert "removeme" not in etc.split() and "passwd" in etc.split() and "layer2" in etc.split()
    assert data.split() == ["c"]
    assert l2 == "layer 2\n"
    # The container's delete went to the upper dir; the shared layer is unchanged.
    assert is_whiteout(upper / "etc/passwd")
    assert (layers[0] / "etc/passwd").exists()
    # overlay leaves a mode-000 work/work dir: remove it as the namespace's root.
    run([UNSHARE, "--user", "--map-root-user", "rm", "-rf", str(work), str(upper)])


def test_ownership_follows_the_mapping(rb, archives):
    ok(rb("load", "-i", archives / "docker.tar"))
    single = unpack(rb, "test/busybox:1", "--idmap", "single")[0]
    me = os.getuid()
    assert single.parent.parent.name == "single"
    # Single id: every file belongs to the caller, the container's root.
    assert os.lstat(single / "home/app/owned").st_uid == me
    assert os.lstat(single / "usr/bin/suid").st_mode & 0o7777 == 0o4755
    if IS_ROOT:
        full = unpack(rb, "test/busybox:1", "--idmap", "auto")[0]
        assert full.parent.parent.name == "identity"
        st = os.lstat(full / "home/app/owned")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert os.lstat(full / "home/app").st_uid == 1000
    elif HAS_SUBIDS:
        full = unpack(rb, "test/busybox:1", "--idmap", "subids")[0]
        assert full.parent.parent.name.startswith("subid-")
        # Container 1000 -> host subuid_start + 999 (0 is the caller, 1.. the range). The
        # directory is 0750 and no longer ours, so its content is out of our reach.
        st = os.lstat(full / "home/app")
        assert (st.st_uid, st.st_gid) == (SUBUID[0] + 999, SUBGID[0] + 999)
        with pytest.raises(PermissionError):
            os.lstat(full / "home/app/owned")
        # chown cleared setuid; it was set again.
        assert os.lstat(full / "usr/bin/suid").st_mode & 0o7777 == 0o4755
        assert os.lstat(full / "etc/passwd").st_uid == me
    # rmi removes both sets of layers, subordinate-owned files included.
    ok(rb("rmi", "test/busybox:1", "test/busybox:latest"))
    store = single.parents[3]
    assert list((store / "layers").glob("*/*/diff")) == []
    assert list((store / "blobs/sha256").iterdir()) == []


def test_oci_archive_gzip_and_zstd_and_dirs(rb, tmp_path, image):
    ib.write_oci(tmp_path / "gz.tar", image, "test/oci:gz", compression="gzip")
    ok(rb("load", "-i", tmp_path / "gz.tar"))
    gz = unpack(rb, "test/oci:gz")
    # The same layers from a zstd archive and from an OCI layout directory (uncompressed)
    # have the same diff ids, so they land in the same layer dirs.
    if shutil.which("zstd"):
        ib.write_oci(tmp_path / "zst.tar", image, "test/oci:zst", compression="zstd")
        r = ok(rb("load", "-i", tmp_path / "zst.tar"))
        assert "test/oci:zst" in r.out
        info = inspect(rb, "test/oci:zst")
        assert info["Manifest"]["Layers"][0]["mediaType"].endswith("+zstd")
        assert unpack(rb, "test/oci:zst") == gz
    layout = tmp_path / "layout"
    ib.write_oci(layout, image, "test/oci:dir", compression=None, as_dir=True)
    ok(rb("load", "-i", layout))
    assert inspect(rb, "test/oci:dir")["Id"] == image.config_digest
    # A compressed archive (tar.gz of an OCI layout) loads too.
    with tarfile.open(tmp_path / "layout.tar.gz", "w:gz") as t:
        for p in sorted(layout.rglob("*")):
            t.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    ok(rb("load", "-i", tmp_path / "layout.tar.gz"))


def test_save_load_round_trip_keeps_digests(rb, archives, tmp_path, image):
    ok(rb("load", "-i", archives / "docker.tar"))
    ok(rb("load", "-i", archives / "oci-gzip.tar"))
    first = {t: inspect(rb, t) for t in ("test/busybox:1", "test/busybox:gzip")}
    out = tmp_path / "out"
    out.mkdir()
    ok(rb("save", "-o", out / "d.tar", "test/busybox:1"))
    ok(rb("save", "--format", "oci-archive", "-o", out / "o.tar", "test/busybox:gzip"))
    ok(rb("save", "--format", "oci-dir", "-o", out / "layout", "test/busybox:gzip"))
    # docker-archive: docker's manifest.json + plain layer tars.
    with tarfile.open(out / "d.tar") as t:
        names = t.getnames()
        m = json.loads(t.extractfile("manifest.json").read())
    assert m[0]["RepoTags"] == ["test/busybox:1"]
    assert m[0]["Config"] == image.config_digest[7:] + ".json"
    assert all(n in names for n in m[0]["Layers"])
    for i, (src, name) in enumerate([(out / "d.tar", "test/busybox:1"), (out / "o.tar", "test/busybox:gzip"),
                                     (out / "layout", "test/busybox:gzip")]):
        fresh = tmp_path / f"fresh{i}"
        ok(rb("load", "-i", src, store_dir=fresh))
        again = inspect_in(rb, fresh, name)
        assert again["Id"] == first[name]["Id"] == image.config_digest
        assert again["RootFS"]["Layers"] == image.diff_ids
        assert again["Manifest"]["Digest"] == first[name]["Manifest"]["Digest"], src
        assert again["Manifest"]["Layers"] == first[name]["Manifest"]["Layers"]
        # The layers really unpack from the saved copy.
        r = ok(rb("image", "unpack", name, store_dir=fresh, timeout=60))
        assert len(r.out.split()) == 3
    # Saving the same image twice gives identical bytes (reproducible archives).
    ok(rb("save", "--format", "oci-archive", "-o", out / "o2.tar", "test/busybox:gzip"))
    assert hashlib.sha256((out / "o.tar").read_bytes()).digest() == hashlib.sha256((out / "o2.tar").read_bytes()).digest()


def inspect_in(rb, store_dir, ref):
    r = ok(rb("image", "inspect", ref, store_dir=store_dir))
    return json.loads(r.out)[0]



def test_import_of_a_users_own_files_runs(rb, base_rootfs, tmp_path):
    """A tar of a user's own files (every entry, the root `./` included, owned by uid 1001, as
    `tar -cf x.tar .` of one's own directory makes it) unpacks and runs: the root's owner
    change used to fail with 'opening .../diff/: No such file or directory'."""
    tgz = tmp_path / "own.tar"

    def own(ti):
        ti.uid, ti.gid, ti.uname, ti.gname = 1001, 1001, "", ""
        return ti

    with tarfile.open(tgz, "w") as t:
        t.add(base_rootfs, arcname=".", filter=own)
    ok(rb("import", tgz, "own:1"))
    r = ok(rb("run", "--rm", "own:1", "stat", "-c", "%u", "/bin", "/bin/busybox"))
    owners = set(r.out.split())
    # Mapped with subordinate ids (or as root) the files keep their owner; with one id, they
    # are the container root's.
    assert owners in ({"1001"}, {"0"}), r

def test_import_rootfs_tarball(rb, base_rootfs, tmp_path):
    tgz = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(base_rootfs, arcname=".")
    r = ok(rb("import", "--change", 'CMD ["/bin/echo", "hi"]', "--change", "ENV A=1", tgz, "imported:v1"))
    image_id = r.out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    info = inspect(rb, "imported:v1")
    assert info["Id"] == image_id
    assert info["Config"]["Cmd"] == ["/bin/echo", "hi"]
    assert info["Config"]["Env"] == ["A=1"]
    assert info["Os"] == "linux" and info["Architecture"]
    assert len(info["RootFS"]["Layers"]) == 1
    layer = unpack(rb, "imported:v1")[0]
    assert (layer / "bin/busybox").is_file()
    # From standard input, without a name: a dangling image, shown as <none>.
    r = ok(rb("import", "-", input=tgz.read_bytes(), timeout=60))
    rows = json.loads(ok(rb("images", "--format", "json")).out)
    assert ("<none>", "<none>") in [(x["Repository"], x["Tag"]) for x in rows]
    # prune removes the dangling one, keeps the named one.
    r = ok(rb("image", "prune"))
    assert "Total reclaimed space" in r.out
    rows = json.loads(ok(rb("images", "--format", "json")).out)
    assert [(x["Repository"], x["Tag"]) for x in rows] == [("imported", "v1")]


# ---------------------------------------------------------------------------
# tag / rmi / prune


def write_container_record(store, cid, image_info):
    """What `rootbox run` writes for a container using an image (containers/<id>/image)."""
    d = store / "containers" / cid
    d.mkdir(parents=True)
    (d / "image").write_text(json.dumps({
        "image": image_info["Manifest"]["Digest"], "config": image_info["Id"], "name": None,
        "diff_ids": image_info["RootFS"]["Layers"], "mapping": "single",
    }))


def test_tag_rmi_and_in_use_images(rb, archives, store, image):
    ok(rb("load", "-i", archives / "docker.tar"))
    ok(rb("tag", "test/busybox:1", "localhost:5000/mine/bb:v2"))
    assert inspect(rb, "localhost:5000/mine/bb:v2")["Id"] == image.config_digest
    # Untagging one of several names keeps the image.
    r = ok(rb("rmi", "test/busybox:latest"))
    assert r.out.strip() == "Untagged: test/busybox:latest"
    assert inspect(rb, "test/busybox:1")["Id"] == image.config_digest
    # By id, with several names: refused without --force.
    r = rb("rmi", image.config_digest[7:19])
    assert r.rc != 0 and "several names" in r.err, r
    layers = unpack(rb, "test/busybox:1", "--idmap", "single")
    info = inspect(rb, "test/busybox:1")
    write_container_record(store, "c1", info)
    ok(rb("rmi", "localhost:5000/mine/bb:v2"))
    r = rb("rmi", "test/busybox:1")
    assert r.rc != 0 and "in use by container(s) c1" in r.err, r
    # --force removes the image but keeps what the container needs.
    r = ok(rb("rmi", "-f", "test/busybox:1"))
    assert f"Deleted: {image.config_digest}" in r.out
    assert rb("image", "inspect", "test/busybox:1").rc != 0
    assert all(d.is_dir() for d in layers)
    # Once the container is gone, prune/GC frees everything.
    shutil.rmtree(store / "containers" / "c1")
    ok(rb("image", "prune", "-a"))
    assert list((store / "blobs/sha256").iterdir()) == []
    assert not any(d.exists() for d in layers)


def test_retag_leaves_dangling_image(rb, tmp_path, image):
    ib.write_docker_archive(tmp_path / "a.tar", image, ["x/y:1"])
    other = ib.single_layer_image(ib.Layer().file("hello", b"hi").bytes())
    ib.write_docker_archive(tmp_path / "b.tar", other, ["x/y:1"])
    ok(rb("load", "-i", tmp_path / "a.tar"))
    ok(rb("load", "-i", tmp_path / "b.tar"))
    rows = json.loads(ok(rb("images", "--format", "json")).out)
    assert sorted((x["Repository"], x["Tag"], x["ID"]) for x in rows) == sorted([
        ("x/y", "1", other.config_digest[7:19]), ("<none>", "<none>", image.config_digest[7:19])])
    r = ok(rb("image", "prune"))
    assert image.config_digest in r.out
    assert len(json.loads(ok(rb("images", "--format", "json")).out)) == 1


# ---------------------------------------------------------------------------
# interop


@pytest.mark.skipif(SKOPEO is None, reason="skopeo not installed")
def test_skopeo_layouts_load_and_rootbox_output_reads(rb, archives, tmp_path, image):
    sk = [SKOPEO, "--insecure-policy"]
    env = {"HOME": str(tmp_path)}
    # skopeo converts the docker-archive into an OCI layout; rootbox loads it.
    r = run([*sk, "copy", f"docker-archive:{archives / 'docker.tar'}", f"oci:{tmp_path / 'sk'}:sk/busybox:copied"],
            env=env, timeout=60)
    assert r.rc == 0, r
    ok(rb("load", "-i", tmp_path / "sk"))
    info = inspect(rb, "sk/busybox:copied")
    # skopeo rewrites the config while converting (so the id differs); the layers are the same.
    assert info["RootFS"]["Layers"] == image.diff_ids
    assert info["Config"]["Cmd"] == ["/bin/sh"]
    layers = unpack(rb, "sk/busybox:copied")
    assert is_whiteout(layers[1] / "etc/removeme")
    # What rootbox saves, skopeo reads: OCI dir, OCI archive and docker-archive.
    ok(rb("save", "--format", "oci-dir", "-o", tmp_path / "out", "sk/busybox:copied"))
    ok(rb("save", "--format", "oci-archive", "-o", tmp_path / "out.tar", "sk/busybox:copied"))
    ok(rb("save", "-o", tmp_path / "docker.tar", "sk/busybox:copied"))
    for src in (f"oci:{tmp_path / 'out'}", f"oci-archive:{tmp_path / 'out.tar'}",
                f"docker-archive:{tmp_path / 'docker.tar'}"):
        r = run([*sk, "inspect", "--raw", src], env=env, timeout=60)
        assert r.rc == 0, r
        r = run([*sk, "inspect", "--config", "--raw", src], env=env, timeout=60)
        assert r.rc == 0, r
        assert json.loads(r.out)["rootfs"]["diff_ids"] == image.diff_ids
    dest = tmp_path / "back"
    r = run([*sk, "copy", f"oci-archive:{tmp_path / 'out.tar'}", f"oci:{dest}:again"], env=env, timeout=60)
    assert r.rc == 0, r
    ok(rb("load", "-i", dest, store_dir=tmp_path / "store2"))
    assert inspect_in(rb, tmp_path / "store2", "again")["Id"] == info["Id"]


@pytest.mark.skipif(UMOCI is None, reason="umoci not installed")
def test_umoci_unpacks_what_rootbox_saved(rb, archives, tmp_path):
    ok(rb("load", "-i", archives / "docker.tar"))
    ok(rb("tag", "test/busybox:1", "umoci"))
    out = tmp_path / "layout"
    ok(rb("save", "--format", "oci-dir", "-o", out, "umoci:latest"))
    # umoci wants a plain tag as the ref name: add one pointing to the same manifest.
    idx = json.loads((out / "index.json").read_text())
    m = dict(idx["manifests"][0])
    m["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    idx["manifests"].append(m)
    (out / "index.json").write_text(json.dumps(idx))
    bundle = tmp_path / "bundle"
    r = run([UMOCI, "unpack", "--rootless", "--image", f"{out}:latest", bundle], timeout=60)
    assert r.rc == 0, r
    assert (bundle / "rootfs/bin/busybox").is_file()
    assert not (bundle / "rootfs/etc/removeme").exists()
    assert sorted(os.listdir(bundle / "rootfs/opt/data")) == ["c"]


# ---------------------------------------------------------------------------
# hostile layers


HOSTILE_EXPECT = {
    # kind: None = unpacks (neutralised), str = error text expected
    "dotdot": "climbs out of the layer root",
    "absolute": None,
    "abs_symlink_write": None,
    "rel_symlink_dir_write": None,
    "hardlink_passwd": "does not exist in this layer",
    "hardlink_dotdot": "climbs out of the layer root",
    "device": None,
    "symlink_loop": "Too many levels of symbolic links",
    "deep_path": "too long or too deep",
    "deep_dirs": "too long or too deep",
    "overlay_xattr": None,
    "bad_whiteout": "invalid whiteout name",
    "whiteout_escape": "climbs out of the layer root",
}


def snapshot(d: pathlib.Path):
    return sorted((str(p.relative_to(d)), p.lstat().st_mtime_ns, p.lstat().st_mode) for p in d.rglob("*"))


@pytest.mark.parametrize("kind", ib.HOSTILE)
def test_hostile_layers_stay_inside(rb, tmp_path, store, kind):
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("untouched")
    before = snapshot(canary)
    passwd_before = pathlib.Path("/etc/passwd").read_bytes()
    layer = ib.hostile_layer(kind, str(canary))
    (tmp_path / "evil.tar").write_bytes(layer)
    ok(rb("import", tmp_path / "evil.tar", f"evil:{kind.replace('_', '-')}"))
    r = rb("image", "unpack", f"evil:{kind.replace('_', '-')}", timeout=60)
    expect = HOSTILE_EXPECT[kind]
    if expect is None:
        assert r.rc == 0, r
        layer_dir = pathlib.Path(r.out.split()[0])
    else:
        assert r.rc != 0, f"hostile layer {kind} unpacked:{r}"
        assert expect in r.err, r
        assert "unpacking layer sha256:" in r.err, r
        # Nothing half-done is left in the cache.
        assert list(store.glob("layers/*/*/diff")) == []
        assert list(store.glob("layers/*/.tmp-*")) == []
        layer_dir = None
    # Nothing outside the target changed.
    assert snapshot(canary) == before
    assert pathlib.Path("/etc/passwd").read_bytes() == passwd_before
    pwned = [p for p in tmp_path.rglob("pwned*") if store not in p.parents]
    assert pwned == []
    if layer_dir is None:
        return
    inside = layer_dir / str(canary).lstrip("/")
    if kind == "absolute":
        assert (inside / "pwned-absolute").read_bytes() == b"x"
    elif kind == "abs_symlink_write":
        # The absolute symlink resolved inside the layer.
        assert os.readlink(layer_dir / "escape") == str(canary)
        assert (inside / "pwned-abs-symlink").read_bytes() == b"x"
    elif kind == "rel_symlink_dir_write":
        assert (inside / "pwned-rel-symlink").read_bytes() == b"x"
    elif kind == "device":
        assert (layer_dir / "ok").read_bytes() == b"fine"
        if IS_ROOT:
            assert stat.S_ISCHR(os.lstat(layer_dir / "dev/null").st_mode)
        else:
            assert not (layer_dir / "dev/null").exists()
            assert "skipped 2 device node(s)" in r.err, r
    elif kind == "overlay_xattr":
        assert "dropped overlay xattrs" in r.err, r
        with pytest.raises(OSError):
            os.getxattr(layer_dir / "dir", "user.overlay.opaque")
        with pytest.raises(OSError):
            os.getxattr(layer_dir / "f", "user.overlay.redirect")
        assert os.getxattr(layer_dir / "f", "user.test") == b"kept"


# ---------------------------------------------------------------------------
# concurrency


def test_concurrent_loads_and_unpacks(rb, archives, store, image):
    results = [None] * 10

    def load(i):
        results[i] = rb("load", "-i", archives / "docker.tar", timeout=120)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.rc == 0, r
    rows = json.loads(ok(rb("images", "--format", "json")).out)
    assert sorted(x["Tag"] for x in rows) == ["1", "latest"]
    idx = json.loads((store / "index.json").read_text())
    assert len(idx["manifests"]) == 2

    def unpack_one(i):
        results[i] = rb("image", "unpack", "--idmap", "single", "test/busybox:1", timeout=120)

    threads = [threading.Thread(target=unpack_one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = set()
    for r in results:
        assert r.rc == 0, r
        outs.add(r.out)
    assert len(outs) == 1
    assert len(list(store.glob("layers/single/*/diff"))) == 3
    assert list(store.glob("layers/single/.tmp-*")) == []
    assert list((store / "tmp").iterdir()) == []
    # Every blob in the store still matches its name.
    for b in (store / "blobs/sha256").iterdir():
        assert hashlib.sha256(b.read_bytes()).hexdigest() == b.name


# ---------------------------------------------------------------------------
# errors users see


def test_bad_input_errors(rb, archives, tmp_path, store, image):
    r = rb("image", "inspect", "nosuch")
    assert r.rc != 0 and "no such image: nosuch" in r.err, r
    r = rb("rmi", "nosuch:1")
    assert r.rc != 0 and "no such image: nosuch:1" in r.err, r
    r = rb("image", "unpack", "Bad:Ref:x")
    assert r.rc != 0 and "invalid reference format" in r.err, r
    ok(rb("load", "-i", archives / "docker.tar"))
    r = rb("tag", "test/busybox:1", "lower/UPPER")
    assert r.rc != 0 and "must be lowercase" in r.err, r
    r = rb("tag", "test/busybox:1", "x:bad:tag:")
    assert r.rc != 0 and "invalid reference format" in r.err, r
    # Not a tar, for load and import.
    txt = tmp_path / "notes.txt"
    txt.write_text("hello, I am not an archive\n" * 100)
    r = rb("load", "-i", txt)
    assert r.rc != 0 and "not a tar archive" in r.err, r
    r = rb("import", txt, "x:y")
    assert r.rc != 0 and "not a tar archive" in r.err, r
    r = rb("load", "-i", tmp_path / "missing.tar")
    assert r.rc != 0 and "missing.tar" in r.err, r
    # A tar that is neither format.
    with tarfile.open(tmp_path / "plain.tar", "w") as t:
        t.add(txt, arcname="notes.txt")
    r = rb("load", "-i", tmp_path / "plain.tar")
    assert r.rc != 0 and "neither a docker-archive" in r.err, r
    # A corrupt OCI archive: a blob whose content does not match its name.
    layout = tmp_path / "layout"
    ib.write_oci(layout, image, "c/orrupt:1", compression="gzip", as_dir=True)
    victim = next(p for p in (layout / "blobs/sha256").iterdir() if p.stat().st_size > 100_000)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = rb("load", "-i", layout, store_dir=tmp_path / "s2")
    assert r.rc != 0 and "hashes to" in r.err and victim.name in r.err, r
    # A blob corrupted in the store is caught on read (unpack, save).
    info = inspect(rb, "test/busybox:1")
    base_blob = store / "blobs/sha256" / info["RootFS"]["Layers"][0][7:]
    data = bytearray(base_blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    base_blob.write_bytes(bytes(data))
    r = rb("image", "unpack", "test/busybox:1")
    assert r.rc != 0 and "corrupt" in r.err, r
    assert list(store.glob("layers/*/*/diff")) == []
    r = rb("save", "-o", tmp_path / "x.tar", "test/busybox:1")
    assert r.rc != 0 and "corrupt" in r.err, r
    assert not (tmp_path / "x.tar").exists()
    # Unknown save format, no command in an image with no Cmd is the run glue's business.
    r = rb("save", "--format", "zip", "-o", tmp_path / "y", "test/busybox:1")
    assert r.rc != 0 and "unknown format" in r.err, r


def test_store_is_private(rb, archives, store):
    ok(rb("load", "-i", archives / "docker.tar"))
    for d in (store, store / "blobs", store / "layers", store / "containers"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
