"""client.images and client.volumes."""

from __future__ import annotations

import io
import tarfile

import pytest

import rootbox
from conftest import IMAGE


def test_images_list_get_tag_remove(own_store_client):
    c = own_store_client
    img = c.images.get(IMAGE)
    assert img.id.startswith("sha256:") and len(img.id) == 71
    assert IMAGE in img.tags
    assert img in c.images.list()
    assert c.images.get(img.id[7:19]) == img  # id prefix
    assert img.tag("test/other", "2")
    assert "test/other:2" in img.tags
    assert c.images.list(name="test/other") == [img]
    assert c.containers.run("test/other:2", "echo via tag", remove=True) == b"via tag\n"
    c.images.remove("test/other:2")
    with pytest.raises(rootbox.ImageNotFound):
        c.images.get("test/other:2")
    assert c.images.get(IMAGE) == img


def test_image_in_use_conflict(own_store_client):
    c = own_store_client
    ct = c.containers.run(IMAGE, "sleep 30", detach=True)
    with pytest.raises(rootbox.RootboxError):
        c.images.remove(IMAGE)
    ct.remove(force=True)


def test_save_and_load_round_trip(own_store_client, tmp_path, store):
    c = own_store_client
    img = c.images.get(IMAGE)
    data = b"".join(img.save(named=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert "manifest.json" in t.getnames()
    other = rootbox.Client(root=tmp_path / "s2", state_dir=tmp_path / "st2")
    loaded = other.images.load(data)
    assert [i.id for i in loaded] == [img.id]
    assert other.containers.run(IMAGE, "echo loaded", remove=True) == b"loaded\n"
    img.save_to(tmp_path / "oci", format="oci-dir")
    third = rootbox.Client(root=tmp_path / "s3", state_dir=tmp_path / "st3")
    assert [i.id for i in third.images.load(tmp_path / "oci")] == [img.id]


def test_import_with_changes_and_history(own_store_client, busybox_tar):
    c = own_store_client
    img = c.images.import_(
        busybox_tar.read_bytes(),
        "test/imported",
        "x",
        changes=["ENV FOO=bar", 'CMD ["sh", "-c", "echo $FOO"]'],
        message="made by the test",
    )
    assert "test/imported:x" in img.tags
    assert c.containers.run("test/imported:x", remove=True) == b"bar\n"
    h = img.history()
    assert h and h[0]["Comment"] == "made by the test"


def test_bad_reference_is_value_error(own_store_client):
    with pytest.raises(ValueError):
        own_store_client.images.get("UPPER/Case::bad")
    with pytest.raises(rootbox.RuntimeFailure) as ei:
        own_store_client.images.load(b"not a tarball at all")
    assert "bad tar archive" in str(ei.value)
    assert own_store_client.images.list() == [own_store_client.images.get("test/busybox:1")]


def test_volumes(client):
    v = client.volumes.create("pydata", labels={"k": "v"})
    assert v.name == "pydata" and v.attrs["Labels"] == {"k": "v"}
    assert v in client.volumes.list()
    client.containers.run(IMAGE, ["sh", "-c", "echo kept > /vol/f"], volumes={"pydata": {"bind": "/vol", "mode": "rw"}}, remove=True)
    assert client.containers.run(IMAGE, "cat /vol/f", volumes=["pydata:/vol:ro"], remove=True) == b"kept\n"
    assert client.volumes.get("pydata").name == "pydata"
    v.remove()
    with pytest.raises(rootbox.VolumeNotFound):
        client.volumes.get("pydata")
    with pytest.raises(ValueError):
        client.volumes.create("bad/name")


def test_commit_then_run_the_new_image(own_store_client):
    c = own_store_client
    ct = c.containers.run(IMAGE, ["sh", "-c", "echo committed > /made.txt; rm /bin/true"], detach=True)
    assert ct.wait()["StatusCode"] == 0
    kinds = {d["Path"]: d["Kind"] for d in ct.diff()}
    assert kinds.get("/made.txt") == 1 and kinds.get("/bin/true") == 2
    img = ct.commit("test/committed", "v1", message="from python", changes=["ENV COMMITTED=yes"])
    assert "test/committed:v1" in img.tags
    assert img.history()[0]["Comment"] == "from python"
    out = c.containers.run("test/committed:v1", ["sh", "-c", "cat /made.txt; echo $COMMITTED; ls /bin/true || echo gone"], remove=True)
    assert out == b"committed\nyes\ngone\n"
    names = []
    with tarfile.open(fileobj=io.BytesIO(b"".join(ct.export()))) as t:
        names = t.getnames()
    assert any(n.lstrip("./") == "made.txt" for n in names)
    with pytest.raises(ValueError):
        ct.commit("Bad Name!")
    ct.remove()
