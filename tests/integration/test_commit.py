"""commit / diff / export / cp: a container's writable layer as a new image (OCI whiteouts,
container-view ownership, history, --change), Docker-like `diff` lines, the merged tree as a
tar, and copies in and out of running and stopped containers that never leave the container's
root. Plus the closing check of the lifecycle work: 100 run/rm cycles leak nothing."""

import gzip
import hashlib
import io
import json
import os
import pathlib
import pty
import subprocess
import tarfile
import time

import pytest

import imagebuild as ib
from layered import fuse_usable
from util import processes_using, run, subids_missing_reason

REF = "test/busybox:1"
GENERATED = {"etc/hostname", "etc/hosts", "etc/resolv.conf"}

# Creates, changes and deletes files: a file deleted from layer 2 (/etc/layer2) and one from
# layer 1 (/usr/bin/suid), a directory replaced by a new one with other content (/opt/data,
# itself opaque in layer 3), a file owned by a non-root container user.
CHANGES = (
    "echo new > /newfile; mkdir -p /newdir/sub; echo deep > /newdir/sub/f; "
    "echo changed >> /etc/passwd; rm /etc/layer2; rm /usr/bin/suid; "
    "rm -rf /opt/data; mkdir /opt/data; echo z > /opt/data/z; ln -s /newfile /link; "
    "echo app > /home/app/new; chown 1000:1000 /home/app/new || true"
)
EXPECTED_DIFF = [
    "C /etc",
    "C /etc/passwd",
    "D /etc/layer2",
    "C /home",
    "C /home/app",
    "A /home/app/new",
    "A /link",
    "A /newdir",
    "A /newdir/sub",
    "A /newdir/sub/f",
    "A /newfile",
    "C /opt",
    "C /opt/data",
    "D /opt/data/c",
    "A /opt/data/z",
    "C /usr",
    "C /usr/bin",
    "D /usr/bin/suid",
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    img = ib.busybox_image()
    cfg = json.loads(img.config)
    cfg["config"]["Env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    img = ib.Image(img.layers, {k: v for k, v in cfg.items() if k != "rootfs"})
    ib.write_docker_archive(d / "busybox.tar", img, [REF])
    return d / "busybox.tar"


@pytest.fixture
def rb(bins, tmp_path, xdg_runtime_dir, archive):
    store = tmp_path / "store"
    state = tmp_path / "state"
    env = {"XDG_RUNTIME_DIR": xdg_runtime_dir, "ROOTBOX_ROOT": str(store), "ROOTBOX_STATE_DIR": str(state)}

    def call(*args, env_extra=None, **kw):
        e = dict(env)
        e.update(env_extra or {})
        return run([bins.rootbox, *args], env=e, **kw)

    call.store = store
    call.state = state
    call.env = env
    r = call("load", "-i", archive)
    assert r.rc == 0, r
    yield call
    for cid in call("ps", "-aq", "--no-trunc").out.split():
        call("rm", "-f", cid)
    call("image", "prune", "-a")


def ok(r):
    assert r.rc == 0, r
    return r


def mapped(opts=()):
    """Whether containers run with OPTS map more than one id (real root, or subids)."""
    if "single" in opts:
        return False
    return os.geteuid() == 0 or not subids_missing_reason()


def finished(rb, name, *opts, script=CHANGES, image=REF):
    ok(rb("run", "-d", "--name", name, *opts, image, "sh", "-c", script))
    r = ok(rb("wait", name))
    assert r.out.strip() == "0", r


def blob(store, digest):
    return (store / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def image_docs(store, ref_name):
    idx = json.loads((store / "index.json").read_text())
    for m in idx["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "").endswith(ref_name):
            man = json.loads(blob(store, m["digest"]))
            return man, json.loads(blob(store, man["config"]["digest"]))
    raise AssertionError(f"{ref_name} not in {idx}")


def tree(tar_bytes):
    """name -> (type, mode, uid, gid, content digest or link target) of a tar."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        for m in t.getmembers():
            name = m.name.rstrip("/")
            if name in GENERATED:
                continue
            data = t.extractfile(m).read() if m.isreg() else b""
            out[name] = (m.type, m.mode, m.uid, m.gid, hashlib.sha256(data).hexdigest() if m.isreg() else m.linkname)
    return out


DRIVERS = ["overlay", "vfs", "fuse-overlayfs"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_commit_gives_exactly_the_changed_tree(rb, tmp_path, driver):
    if driver == "fuse-overlayfs" and fuse_usable():
        pytest.skip(fuse_usable())
    opts = ["--storage-driver", driver]
    if driver == "vfs" and os.geteuid() != 0:
        # The vfs copy runs as the host user: files of other subordinate ids are unreadable.
        opts += ["--idmap", "single"]
    finished(rb, "src", *opts)
    d = ok(rb("diff", "src"))
    expected = list(EXPECTED_DIFF)
    if driver == "fuse-overlayfs":
        # fuse-overlayfs copies up the other name of a hard link when one name is deleted.
        expected.append("C /usr/bin/suid-link")
    assert d.lines == sorted(expected, key=lambda line: line[2:]), d

    r = ok(rb("commit", "-m", "my message", "-a", "Jane <jane@example.com>", "src", "test/committed:1"))
    image_id = r.out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, r

    man, cfg = image_docs(rb.store, "test/committed:1")
    # The new layer: gzip, its diff id the sha256 of the uncompressed tar.
    layer = blob(rb.store, man["layers"][-1]["digest"])
    raw = gzip.decompress(layer)
    assert cfg["rootfs"]["diff_ids"][-1] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert len(cfg["rootfs"]["diff_ids"]) == 4
    assert cfg["history"][-1]["comment"] == "my message", cfg["history"]
    assert cfg["history"][-1]["author"] == "Jane <jane@example.com>"
    assert cfg["author"] == "Jane <jane@example.com>"
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        members = {m.name.rstrip("/"): m for m in t.getmembers()}
    names = set(members)
    # The overlay's writable layer holds the replaced directory as opaque; the vfs copy is
    # compared file by file, so the old content is deleted one by one.
    replaced = "opt/data/.wh.c" if driver == "vfs" else "opt/data/.wh..wh..opq"
    for wh in ("etc/.wh.layer2", "usr/bin/.wh.suid", replaced):
        assert wh in names, sorted(names)
    assert {"newfile", "newdir/sub/f", "opt/data/z", "etc/passwd", "link"} <= names
    assert not names & GENERATED, "generated /etc files were committed"
    if driver != "vfs":
        assert "opt/data/.wh.c" not in names, "the opaque directory covers c"
    assert "bin/busybox" not in names, "unchanged files were committed"
    assert members["newfile"].uid == 0 and members["newfile"].gid == 0
    if mapped(opts):
        assert (members["home/app/new"].uid, members["home/app/new"].gid) == (1000, 1000)
        assert members["home/app"].uid == 1000

    # A new container from the image sees exactly the source container's tree.
    ok(rb("create", "--name", "dst", *opts, "test/committed:1"))
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    ok(rb("export", "-o", a, "src"))
    ok(rb("export", "-o", b, "dst"))
    ta, tb = tree(a.read_bytes()), tree(b.read_bytes())
    assert ta == tb, (set(ta) ^ set(tb), [k for k in ta if k in tb and ta[k] != tb[k]])
    r = ok(rb("run", "--rm", "test/committed:1", "sh", "-c",
              "cat /newfile /newdir/sub/f; tail -n1 /etc/passwd; ls /opt/data; "
              "test -e /etc/layer2 || echo no-layer2; test -e /usr/bin/suid || echo no-suid"))
    assert r.lines == ["new", "deep", "changed", "z", "no-layer2", "no-suid"], r
    assert ok(rb("diff", "dst")).out == "", "a fresh container of the committed image has changes"


def test_commit_keeps_extended_attributes(rb, tmp_path):
    """A file and a directory with user.* xattrs in the image, changed in the container (so
    overlay copies them up): the committed layer carries the xattrs as PAX SCHILY.xattr
    records, and a commit of a container of that image carries them again (they were unpacked
    onto its files). Overlay's own xattrs are not committed."""
    img = ib.busybox_image()
    tagged = ib.Layer().dir("opt").dir("opt/xdir", pax={"SCHILY.xattr.user.dirnote": "d"}).file(
        "opt/tagged", b"v1\n", pax={"SCHILY.xattr.user.demo": "kept", "SCHILY.xattr.user.other": "two"})
    cfg = json.loads(img.config)
    img = ib.Image(img.layers + [tagged.bytes()], {k: v for k, v in cfg.items() if k != "rootfs"})
    ib.write_docker_archive(tmp_path / "x.tar", img, ["test/xattrs:1"])
    ok(rb("load", "-i", tmp_path / "x.tar"))

    def committed_layer(src, ref):
        ok(rb("commit", src, ref))
        man, _ = image_docs(rb.store, ref)
        raw = gzip.decompress(blob(rb.store, man["layers"][-1]["digest"]))
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            return {m.name.rstrip("/"): m.pax_headers for m in t.getmembers()}

    finished(rb, "x1", image="test/xattrs:1", script="echo v2 >> /opt/tagged; touch /opt/xdir/new")
    layer = committed_layer("x1", "test/xattrs:2")
    assert layer["opt/tagged"].get("SCHILY.xattr.user.demo") == "kept", layer["opt/tagged"]
    assert layer["opt/tagged"].get("SCHILY.xattr.user.other") == "two", layer["opt/tagged"]
    assert layer["opt/xdir"].get("SCHILY.xattr.user.dirnote") == "d", layer["opt/xdir"]
    assert not any(k.startswith("SCHILY.xattr.user.overlay.") for h in layer.values() for k in h), layer

    finished(rb, "x2", image="test/xattrs:2", script="echo v3 >> /opt/tagged")
    again = committed_layer("x2", "test/xattrs:3")
    assert again["opt/tagged"].get("SCHILY.xattr.user.demo") == "kept", again["opt/tagged"]
    assert ok(rb("run", "--rm", "test/xattrs:3", "cat", "/opt/tagged")).lines == ["v1", "v2", "v3"]


def test_commit_change_untagged_and_errors(rb):
    finished(rb, "src", script="echo hi > /greeting")
    r = ok(rb("commit", "-c", 'CMD ["echo","hi"]', "-c", "ENV FOO=bar", "-c", "WORKDIR /opt",
              "-c", "LABEL team=core", "-c", "EXPOSE 8080", "src", "test/cmd:1"))
    assert ok(rb("run", "--rm", "test/cmd:1")).out == "hi\n"
    r = ok(rb("run", "--rm", "test/cmd:1", "sh", "-c", 'echo $FOO; pwd; cat /greeting'))
    assert r.lines == ["bar", "/opt", "hi"], r
    cfg = image_docs(rb.store, "test/cmd:1")[1]["config"]
    assert cfg["Labels"]["team"] == "core" and "8080/tcp" in cfg["ExposedPorts"], cfg

    # Without a name: a dangling image, listed as <none> by id.
    image_id = ok(rb("commit", "src")).out.strip()
    rows = [l.split() for l in ok(rb("images")).lines[1:]]
    assert ["<none>", "<none>", image_id.split(":")[1][:12]] in [r[:3] for r in rows], rows

    r = rb("commit", "-c", "FROBNICATE x", "src")
    assert r.rc != 0 and "FROBNICATE" in r.err, r
    r = rb("commit", "nosuch", "x:1")
    assert r.rc != 0 and "nosuch" in r.err, r
    r = rb("commit", "src", "Bad Name")
    assert r.rc != 0 and "Bad Name" in r.err, r


def test_commit_records_the_containers_command_env_workdir_and_user(rb):
    # As `docker commit`: the new image runs what the container ran, with its -e, -w and -u
    # (a -e of a variable the image sets replaces it); -c changes still win.
    script = 'echo "$GREETING from $(pwd) as $(id -u) with $PATH"'
    finished(rb, "cfg", "-e", "GREETING=hello", "-e", "PATH=/bin:/usr/bin", "-w", "/tmp",
             "-u", "1000:1000", script=script)
    ok(rb("commit", "cfg", "test/cfg:1"))
    cfg = image_docs(rb.store, "test/cfg:1")[1]["config"]
    assert cfg["Cmd"] == ["sh", "-c", script], cfg
    assert "GREETING=hello" in cfg["Env"] and [e for e in cfg["Env"] if e.startswith("PATH=")] == ["PATH=/bin:/usr/bin"], cfg
    assert cfg["WorkingDir"] == "/tmp" and cfg["User"] == "1000:1000", cfg
    assert ok(rb("run", "--rm", "test/cfg:1")).out == "hello from /tmp as 1000 with /bin:/usr/bin\n"
    ok(rb("commit", "-c", 'CMD ["echo", "changed"]', "-c", "USER 0", "cfg", "test/cfg:2"))
    cfg = image_docs(rb.store, "test/cfg:2")[1]["config"]
    assert cfg["Cmd"] == ["echo", "changed"] and cfg["User"] == "0" and "GREETING=hello" in cfg["Env"], cfg
    assert ok(rb("run", "--rm", "test/cfg:2")).out == "changed\n"


def test_commit_running_container_and_volume_mount_points(rb):
    ok(rb("run", "-d", "--name", "live", "-v", "named:/data", "-v", "/scratch", REF, "sh", "-c",
          "echo secret > /data/s; echo anon > /scratch/a; echo mine > /mine; touch /ready; sleep 1000"))
    for _ in range(200):
        if "A /ready" in rb("diff", "live").out:
            break
        time.sleep(0.05)
    d = ok(rb("diff", "live")).lines
    assert "A /mine" in d and not any("/data/s" in l or "/scratch/a" in l for l in d), d
    ok(rb("commit", "live", "test/live:1"))
    assert ok(rb("inspect", "live")) and json.loads(rb("inspect", "live").out)[0]["State"]["Running"]
    r = ok(rb("run", "--rm", "test/live:1", "sh", "-c", "cat /mine; ls -A /data /scratch; echo end"))
    assert r.lines == ["mine", "/data:", "", "/scratch:", "end"], r
    ok(rb("rm", "-f", "live"))


def test_export_content_ownership_and_tty(rb, tmp_path):
    finished(rb, "src")
    r = rb("export", "src")
    assert r.rc == 0, r.err
    with tarfile.open(fileobj=io.BytesIO(r.out_bytes)) as t:
        m = {x.name.rstrip("/"): x for x in t.getmembers()}
        assert t.extractfile(m["newfile"]).read() == b"new\n"
        assert m["bin/busybox"].mode == 0o755 and m["bin/busybox"].uid == 0
        assert m["usr/bin/suid-link"].isfile() or m["usr/bin/suid-link"].islnk()
        assert "etc/layer2" not in m and "opt/data/c" not in m and "opt/data/z" in m
        if mapped():
            # Owned by subordinate ids on the host, by 1000 in the container; 0750, so only
            # readable inside the user namespace.
            assert (m["home/app"].uid, m["home/app/owned"].uid) == (1000, 1000)
            assert t.extractfile(m["home/app/owned"]).read() == b"mine\n"
    master, slave = pty.openpty()
    try:
        p = subprocess.run([rb_bin(rb), "export", "src"], stdout=slave, stderr=subprocess.PIPE,
                           env={**os.environ, **rb.env}, timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode != 0 and b"terminal" in p.stderr, p


def rb_bin(rb):
    return str(pathlib.Path(os.environ["ROOTBOX_BIN"]) / "rootbox")


def test_cp_in_and_out_running_and_stopped(rb, tmp_path):
    ok(rb("run", "-d", "--name", "cp1", REF, "sleep", "1000"))
    host = tmp_path / "h"
    host.mkdir()
    (host / "f.txt").write_text("from host\n")
    (host / "d" / "sub").mkdir(parents=True)
    (host / "d" / "sub" / "g").write_text("g\n")
    os.symlink("f.txt", host / "d" / "lnk")

    ok(rb("cp", host / "f.txt", "cp1:/tmp/"))
    ok(rb("cp", host / "d", "cp1:/opt/newdir"))
    r = ok(rb("exec", "cp1", "sh", "-c",
              "cat /tmp/f.txt /opt/newdir/sub/g; readlink /opt/newdir/lnk; stat -c %u:%g /tmp/f.txt"))
    assert r.lines == ["from host", "g", "f.txt", "0:0"], r

    out = tmp_path / "out"
    out.mkdir()
    ok(rb("cp", "cp1:/etc/passwd", out))
    assert (out / "passwd").read_text().startswith("root:x:0:0")
    ok(rb("cp", "cp1:/opt", out / "optcopy"))
    assert (out / "optcopy" / "newdir" / "sub" / "g").read_text() == "g\n"
    assert (out / "optcopy" / "data" / "c").read_text() == "c\n"

    # Tar streams both ways, owners as the container sees them.
    r = rb("cp", "cp1:/etc", "-")
    assert r.rc == 0, r.err
    with tarfile.open(fileobj=io.BytesIO(r.out_bytes)) as t:
        m = {x.name: x for x in t.getmembers()}
    assert m["etc/passwd"].uid == 0 and "etc/layer2" in m, sorted(m)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("streamed/x")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"xyz"))
    ok(rb("cp", "-", "cp1:/tmp", input=buf.getvalue()))
    assert ok(rb("exec", "cp1", "cat", "/tmp/streamed/x")).out == "xyz"

    # A symlink pointing out of the container resolves inside it: the host is never read
    # or written.
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "s").write_text("host secret\n")
    ok(rb("exec", "cp1", "ln", "-s", "/../../../../../../../.." + str(secret), "/escape"))
    r = rb("cp", "cp1:/escape/s", out / "stolen")
    assert r.rc != 0 and not (out / "stolen").exists(), r
    r = rb("cp", host / "f.txt", "cp1:/escape/planted")
    assert not (secret / "planted").exists(), r
    r = rb("cp", "cp1:../../../../etc/shadow", out / "shadow")
    assert r.rc != 0 and "no such file" in r.err and not (out / "shadow").exists(), r
    r = rb("cp", "nosuch:/etc/passwd", out)
    assert r.rc != 0 and "nosuch" in r.err, r
    r = rb("cp", "cp1:/does/not/exist", out)
    assert r.rc != 0 and "/does/not/exist" in r.err, r
    r = rb("cp", host / "f.txt", host / "g")
    assert r.rc != 0 and "CONTAINER:PATH" in r.err, r

    # Stopped: through the layers; a copy into a lower layer's directory lands in the
    # writable layer, and a deleted directory comes back without its old content.
    ok(rb("stop", "-t", "0", "cp1"))
    ok(rb("cp", host / "f.txt", "cp1:/opt/data/"))
    ok(rb("cp", "cp1:/opt/data/f.txt", out / "back.txt"))
    assert (out / "back.txt").read_text() == "from host\n"
    ok(rb("cp", "cp1:/tmp/streamed", out / "streamed"))
    assert (out / "streamed" / "x").read_text() == "xyz"
    d = ok(rb("diff", "cp1")).lines
    assert "A /opt/data/f.txt" in d and "A /tmp/f.txt" in d, d
    r = rb("cp", "cp1:/escape/s", out / "stolen")
    assert r.rc != 0 and not (out / "stolen").exists(), r
    ok(rb("rm", "cp1"))


def test_hundred_run_rm_cycles_leak_nothing(rb, tmp_path):
    """100 sequential `run --rm` leave no process, mount, fd, state or store directory."""
    def mounts():
        with open("/proc/self/mountinfo") as f:
            return sum(1 for _ in f)

    ok(rb("run", "--rm", REF, "true"))  # unpack once
    fds = len(os.listdir("/proc/self/fd"))
    m0 = mounts()
    for i in range(100):
        r = rb("run", "--rm", REF, "true")
        assert r.rc == 0, (i, r)
    assert mounts() == m0
    assert len(os.listdir("/proc/self/fd")) == fds
    assert processes_using([rb.state, rb.store]) == []
    assert [p for p in rb.state.iterdir() if not p.name.startswith(".")] == [] if rb.state.exists() else True
    assert list((rb.store / "containers").iterdir()) == []
    assert list((rb.store / "tmp").iterdir()) == []
