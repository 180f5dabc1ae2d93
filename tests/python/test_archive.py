"""Container.get_archive / put_archive (docker cp as the Docker SDK has it)."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

import rootbox
from conftest import IMAGE

DIR_BIT = 1 << 31
LINK_BIT = 1 << 27


def untar(chunks) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))


def make_tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_get_archive_of_a_file_a_directory_and_a_symlink(client):
    ct = client.containers.run(
        IMAGE,
        ["sh", "-c", "mkdir -p /data/sub && printf 'file content\\n' > /data/f.txt && chmod 640 /data/f.txt"
         " && echo below > /data/sub/g && ln -s f.txt /data/link && touch /ready && sleep 30"],
        detach=True,
    )
    for _ in range(100):
        if ct.exec_run("test -e /ready").exit_code == 0:
            break
    chunks, stat = ct.get_archive("/data/f.txt", chunk_size=4)
    assert stat["name"] == "f.txt" and stat["size"] == 13 and stat["linkTarget"] == ""
    assert stat["mode"] == 0o640 and stat["mtime"].endswith("Z")
    with untar(chunks) as t:
        [m] = t.getmembers()
        assert m.name == "f.txt" and m.mode & 0o7777 == 0o640
        assert t.extractfile(m).read() == b"file content\n"

    chunks, stat = ct.get_archive("/data")
    assert stat["name"] == "data" and stat["mode"] & DIR_BIT and stat["mode"] & 0o777 == 0o755
    with untar(chunks) as t:
        names = sorted(m.name.rstrip("/") for m in t.getmembers())
        assert names == ["data", "data/f.txt", "data/link", "data/sub", "data/sub/g"]
        assert t.getmember("data/link").issym() and t.getmember("data/link").linkname == "f.txt"
        assert t.extractfile("data/sub/g").read() == b"below\n"

    _, stat = ct.get_archive("/data/link")
    assert stat["mode"] & LINK_BIT and stat["linkTarget"] == "/data/f.txt"

    # Stopped: through its layers.
    ct.kill()
    ct.wait()
    chunks, _ = ct.get_archive("/data/f.txt")
    with untar(chunks) as t:
        assert t.extractfile("f.txt").read() == b"file content\n"


def test_put_archive_then_read_it_from_inside(client):
    ct = client.containers.run(IMAGE, "sleep 30", detach=True)
    data = make_tar([("hello.txt", b"from put_archive\n", 0o600), ("d", None, 0o750), ("d/x", b"x\n", 0o644)])
    assert ct.put_archive("/tmp", data) is True
    code, out = ct.exec_run(["sh", "-c", "cat /tmp/hello.txt /tmp/d/x; stat -c %a /tmp/hello.txt /tmp/d"])
    assert (code, out) == (0, b"from put_archive\nx\n600\n750\n")
    # Compressed and from a file object, as Docker accepts it.
    assert ct.put_archive("/", io.BytesIO(gzip.compress(make_tar([("gz.txt", b"gzip\n", 0o644)]))))
    assert ct.exec_run("cat /gz.txt").output == b"gzip\n"


def test_archive_errors(client):
    ct = client.containers.run(IMAGE, "sleep 30", detach=True)
    with pytest.raises(rootbox.NotFound, match="/no/such/path"):
        ct.get_archive("/no/such/path")
    data = make_tar([("f", b"f\n", 0o644)])
    with pytest.raises(rootbox.NotFound, match="/no/such/dir"):
        ct.put_archive("/no/such/dir", data)
    with pytest.raises(ValueError, match="/etc/passwd"):
        ct.put_archive("/etc/passwd", data)
    with pytest.raises(ValueError, match="tar"):
        ct.put_archive("/tmp", b"this is not a tar archive, not at all" * 20)
    with pytest.raises(ValueError, match=r"\.\."):
        ct.put_archive("/tmp", make_tar([("../escape", b"x", 0o644)]))
    ct.remove(force=True)
    with pytest.raises(rootbox.ContainerNotFound):
        ct.get_archive("/etc/passwd")
