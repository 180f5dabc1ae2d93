"""images.pull / images.push / client.login against a local docker-registry with htpasswd
authentication (the ``registry`` fixture of conftest.py)."""

from __future__ import annotations

import json

import pytest

import rootbox
from conftest import AUTH, IMAGE, REGISTRY_USER


def test_push_then_pull_into_a_fresh_store_and_run(own_store_client, registry, tmp_path):
    c = own_store_client
    img = c.images.get(IMAGE)
    repo = f"{registry.host}/py/busybox"
    assert img.tag(repo, "v1")
    out = c.images.push(repo, "v1", auth_config=AUTH)
    events = [json.loads(line) for line in out.split("\r\n") if line]
    assert events[0] == {"status": f"The push refers to repository [{repo}]"}
    assert any(e.get("status") == "Pushed" for e in events), events
    aux = [e["aux"] for e in events if "aux" in e]
    assert len(aux) == 1 and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:")
    digest = aux[0]["Digest"]

    # Again, streamed and decoded: the registry has every blob now.
    streamed = list(c.images.push(f"{repo}:v1", stream=True, decode=True, auth_config=AUTH))
    layers = [e for e in streamed if e.get("id")]
    assert layers and all(e["status"] == "Layer already exists" for e in layers), streamed
    raw = list(c.images.push(f"{repo}:v1", stream=True, auth_config=AUTH))
    assert raw and all(isinstance(b, bytes) and b.endswith(b"\r\n") for b in raw)

    fresh = rootbox.Client(root=tmp_path / "fresh-store", state_dir=tmp_path / "fresh-state")
    pulled = fresh.images.pull(repo, tag="v1", auth_config=AUTH)
    assert isinstance(pulled, rootbox.Image)
    assert pulled.id == img.id and f"{repo}:v1" in pulled.tags
    assert fresh.containers.run(f"{repo}:v1", "echo pulled and running", remove=True) == b"pulled and running\n"
    # By digest, and every tag at once (a second tag of the same image: one image).
    assert fresh.images.pull(f"{repo}@{digest}", auth_config=AUTH).id == img.id
    img.tag(repo, "v2")
    c.images.push(repo, "v2", auth_config=AUTH)
    every = fresh.images.pull(repo, all_tags=True, auth_config=AUTH)
    assert [i.id for i in every] == [img.id]
    assert {f"{repo}:v1", f"{repo}:v2"} <= set(fresh.images.get(img.id).tags)


def test_push_without_tag_pushes_every_tag(own_store_client, registry, tmp_path):
    c = own_store_client
    repo = f"{registry.host}/py/alltags"
    img = c.images.get(IMAGE)
    img.tag(repo, "a")
    img.tag(repo, "b")
    out = c.images.push(repo, auth_config=AUTH)
    tags = [json.loads(line)["aux"]["Tag"] for line in out.split("\r\n") if '"aux"' in line]
    assert tags == ["a", "b"]


def test_login_is_used_by_later_pulls(registry, tmp_path):
    c = rootbox.Client(root=tmp_path / "store", state_dir=tmp_path / "state")
    cfg = tmp_path / "auth.json"
    with pytest.raises(rootbox.RuntimeFailure, match="unauthorized"):
        c.login(REGISTRY_USER, "wrong-password", registry=registry.host, dockercfg_path=cfg)
    assert not cfg.exists()
    assert c.login(REGISTRY_USER, AUTH["password"], registry=registry.host, dockercfg_path=cfg)["Status"] == "Login Succeeded"
    assert registry.host in json.loads(cfg.read_text())["auths"]
    # No auth_config: the login's credentials. Missing repository: ImageNotFound, named.
    with pytest.raises(rootbox.ImageNotFound, match="py/never-pushed"):
        c.images.pull(f"{registry.host}/py/never-pushed", "1")


def test_registry_errors_name_the_bad_thing(own_store_client, registry):
    c = own_store_client
    repo = f"{registry.host}/py/errors"
    c.images.get(IMAGE).tag(repo, "1")
    c.images.push(repo, "1", auth_config=AUTH)
    with pytest.raises(rootbox.ImageNotFound, match="no-such-tag"):
        c.images.pull(repo, "no-such-tag", auth_config=AUTH)
    with pytest.raises(rootbox.ImageNotFound, match="py/unknown"):
        c.images.pull(f"{registry.host}/py/unknown", auth_config=AUTH)
    with pytest.raises(rootbox.RuntimeFailure, match="unauthorized"):
        c.images.pull(repo, "1")
    with pytest.raises(rootbox.RuntimeFailure, match="unauthorized"):
        c.images.pull(repo, "1", auth_config={"username": REGISTRY_USER, "password": "nope"})
    with pytest.raises(ValueError, match="UPPER"):
        c.images.pull("UPPER/Case", "x")
    with pytest.raises(ValueError, match="username"):
        c.images.pull(repo, "1", auth_config={"password": "x"})
    with pytest.raises(rootbox.ImageNotFound, match="not-in-store"):
        c.images.push(f"{registry.host}/py/not-in-store", "1", auth_config=AUTH)
    c.images.get(IMAGE).tag("127.0.0.1:1/py/nowhere", "1")
    with pytest.raises(rootbox.RuntimeFailure, match="cannot reach"):
        c.images.push("127.0.0.1:1/py/nowhere", "1")
