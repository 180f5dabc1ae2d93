"""User-namespace id mappings: single id, subordinate ranges (newuidmap), root's identity."""

import os

import pytest

from util import GID, HAS_SUBIDS, SUBGID, SUBUID, UID, parse_idmap

MAPS = "cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map"


def maps(r):
    assert r.rc == 0, r
    u, g = r.out.split("---\n", 1)
    return parse_idmap(u), parse_idmap(g)


def assert_subid_map(m, caller, rng, r):
    start, count = rng
    assert [0, caller, 1] in m, f"container root is not the caller:{r}"
    rest = [e for e in m if e[0] != 0]
    assert len(rest) == 1, r
    inside, outside, n = rest[0]
    assert inside == 1 and outside == start, r
    assert 65535 <= n <= count, r


@pytest.mark.unprivileged
def test_single_id_mode(box):
    u, g = maps(box("sh", "-c", MAPS, opts=["--idmap", "single"]))
    assert u == [[0, UID, 1]]
    assert g == [[0, GID, 1]]


@pytest.mark.unprivileged
def test_single_id_mode_rejects_unmapped_user(box):
    r = box("id", "-u", opts=["--idmap", "single", "-u", "1000"])
    assert r.rc == 125, r
    assert "1000" in r.err, r


@pytest.mark.unprivileged
def test_single_id_mode_files_owned_by_caller(box, tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    r = box("sh", "-c", "touch /v/f; stat -c '%u %g' /v/f", opts=["--idmap", "single", "-v", f"{d}:/v"])
    assert r.rc == 0, r
    assert r.out.split() == ["0", "0"], r
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (UID, GID)


@pytest.mark.subids
def test_subids_mode(box):
    r = box("sh", "-c", MAPS, opts=["--idmap", "subids"])
    u, g = maps(r)
    assert_subid_map(u, UID, SUBUID, r)
    assert_subid_map(g, GID, SUBGID, r)


@pytest.mark.subids
def test_subids_mode_user_maps_to_range(box, tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    os.chmod(d, 0o777)
    r = box("sh", "-c", "id -u; touch /v/f", opts=["--idmap", "subids", "-u", "1000:1000", "-v", f"{d}:/v"])
    assert r.rc == 0, r
    assert r.lines == ["1000"], r
    st = os.stat(d / "f")
    # container 1..65535 -> SUBUID start..: container 1000 is start + 999
    assert st.st_uid == SUBUID[0] + 999, st
    assert st.st_gid == SUBGID[0] + 999, st


@pytest.mark.unprivileged
def test_auto_is_default(box):
    default = maps(box("sh", "-c", MAPS))
    auto = maps(box("sh", "-c", MAPS, opts=["--idmap", "auto"]))
    assert default == auto
    expected_mode = "subids" if HAS_SUBIDS else "single"
    explicit = maps(box("sh", "-c", MAPS, opts=["--idmap", expected_mode]))
    assert default == explicit, f"auto should pick {expected_mode}"


@pytest.mark.root_only
def test_root_identity_mapping(box):
    u, g = maps(box("sh", "-c", MAPS))
    assert u == [[0, 0, 4294967295]]
    assert g == [[0, 0, 4294967295]]


def test_bad_idmap_value(box):
    r = box("true", opts=["--idmap", "bogus"])
    assert r.rc != 0, r
    assert "bogus" in r.err, r
