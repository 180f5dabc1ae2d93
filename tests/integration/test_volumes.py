"""Volumes: `-v NAME:/ctr`, `-v /ctr`, `-v /host:/ctr:ro`, `--tmpfs`, `--mount`, and
`rootbox volume create|ls|inspect|rm|prune`."""

import json
import os

import pytest

from layered import lowers, new_box, rb, store  # noqa: F401  (fixtures)


def names(rb):
    r = rb("volume", "ls", "-q")
    assert r.rc == 0, r
    return r.lines


def test_named_volume_persists_across_runs(rb, rootfs, store):
    r = rb("run", "--rootfs", rootfs, "-v", "data:/data", "--", "sh", "-c", "echo kept > /data/f")
    assert r.rc == 0, r
    assert (store / "volumes" / "data" / "_data" / "f").read_text() == "kept\n"
    r = rb("run", "--rootfs", rootfs, "-v", "data:/elsewhere", "--", "cat", "/elsewhere/f")
    assert r.rc == 0 and r.out == "kept\n", r
    assert names(rb) == ["data"]


def test_new_volume_is_seeded_from_the_image(rb, new_box, store):
    box = new_box()
    # /data/old in the merged layers holds only b (the upper layer's opaque dir hides a, sub/).
    r = rb("run", *box.opts(), "-v", "seeded:/data/old", "--", "sh", "-c", "ls /data/old; echo mine > /data/old/m")
    assert r.rc == 0, r
    assert r.lines == ["b"], r
    data = store / "volumes" / "seeded" / "_data"
    assert sorted(os.listdir(data)) == ["b", "m"]
    # Seeded once only: mounted over another path, the volume keeps its own content.
    r = rb("run", *new_box().opts(), "-v", "seeded:/etc", "--", "ls", "/etc")
    assert r.rc == 0 and r.lines == ["b", "m"], r
    # nocopy: no seeding.
    r = rb("run", *new_box().opts(), "-v", "empty:/data:nocopy", "--", "ls", "-A", "/data")
    assert r.rc == 0 and r.out == "", r


def test_volume_seeded_from_a_plain_rootfs(rb, rootfs):
    r = rb("run", "--rootfs", rootfs, "--mount", "type=volume,source=etcv,target=/etc", "--", "cat", "/etc/passwd")
    assert r.rc == 0, r
    assert r.lines[0].startswith("root:x:0:0"), r


def test_anonymous_volume_is_removed_with_the_container(rb, rootfs, store):
    r = rb("run", "--rm", "--rootfs", rootfs, "-v", "/scratch", "--", "sh", "-c",
           "echo x > /scratch/f; grep ' /scratch ' /proc/self/mountinfo | wc -l")
    assert r.rc == 0 and r.lines == ["1"], r
    assert names(rb) == [], "the anonymous volume was left behind"


def test_readonly_mounts_reject_writes(rb, rootfs, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    for opts in (
        ["-v", "rov:/v:ro"],
        ["--mount", "type=volume,source=rov,target=/v,readonly"],
        ["-v", f"{host}:/v:ro"],
        ["--mount", f"type=bind,source={host},target=/v,readonly=true"],
    ):
        r = rb("run", "--rootfs", rootfs, *opts, "--", "sh", "-c", "echo x > /v/f")
        assert r.rc != 0, (opts, r)
        assert "Read-only file system" in r.err, (opts, r)
    assert list(host.iterdir()) == []
    # The same volume read-write works.
    r = rb("run", "--rootfs", rootfs, "-v", "rov:/v", "--", "sh", "-c", "echo x > /v/f")
    assert r.rc == 0, r


def test_volume_in_use_cannot_be_removed(rb, rootfs, background, bins, store):
    b = background(
        [bins.rootbox, "run", "--name", "user1", "--rootfs", rootfs, "-v", "busy:/v", "--", "sh", "-c", "trap 'exit 0' TERM; echo up; sleep 20 & wait"],
        env={"ROOTBOX_ROOT": str(store)},
    )
    b.wait_for("up")
    r = rb("volume", "rm", "busy")
    assert r.rc == 1, r
    assert "volume busy is in use by container user1 (running)" in r.err, r
    r = rb("volume", "rm", "--force", "busy")
    assert r.rc == 1 and "in use" in r.err, r
    r = rb("volume", "inspect", "busy")
    assert json.loads(r.out)[0]["UsedBy"] == ["user1"], r
    r = rb("volume", "prune", "--all")
    assert r.rc == 0 and "busy" not in r.lines, r
    b.signal(15)
    b.finish()
    r = rb("volume", "rm", "busy")
    assert r.rc == 0 and r.lines == ["busy"], r
    assert not (store / "volumes" / "busy").exists()


def test_volume_mount_is_private_to_the_container(rb, rootfs, background, bins, store):
    b = background(
        [bins.rootbox, "run", "--rootfs", rootfs, "-v", "priv:/v", "--tmpfs", "/t", "--", "sh", "-c", "trap 'exit 0' TERM; echo up; sleep 20 & wait"],
        env={"ROOTBOX_ROOT": str(store)},
    )
    b.wait_for("up")
    with open("/proc/self/mountinfo") as f:
        host = f.read()
    assert str(store) not in host and str(rootfs) not in host, "a container mount is visible on the host"
    b.signal(15)
    b.finish()


def test_tmpfs_mounts(rb, rootfs):
    r = rb("run", "--rootfs", rootfs, "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
           "--tmpfs", "/u:size=2m", "--", "sh", "-c",
           "grep -E ' /(t|u) ' /proc/self/mountinfo; stat -c %a /t")
    assert r.rc == 0, r
    t = [l for l in r.lines if " /t " in l]
    u = [l for l in r.lines if " /u " in l]
    assert t and "size=1024k" in t[0] and "tmpfs" in t[0], r
    assert u and "size=2048k" in u[0], r
    assert r.lines[-1] == "1770", r


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mount", "type=bind,target=/c"], "a bind mount needs source=HOST-PATH"),
        (["--mount", "type=bind,source=rel,target=/c"], "is not an absolute path"),
        (["--mount", "type=nfs,target=/c"], 'unknown type "nfs"'),
        (["--mount", "type=volume,source=v1"], "target=... is missing"),
        (["--mount", "type=volume,target=c"], 'container path "c" is not absolute'),
        (["--mount", "type=tmpfs,source=/x,target=/t"], "a tmpfs takes no source"),
        (["--mount", "type=tmpfs,target=/t,tmpfs-size=lots"], "is not a size"),
        (["--mount", "type=volume,target=/c,colour=blue"], 'unknown field "colour"'),
        (["--mount", "type=volume,target=/c,readonly=maybe"], "expected true or false"),
        (["-v", "bad name:/c"], "neither an absolute host path nor a volume name"),
        (["-v", "data:/c:xx"], 'unknown option "xx"'),
        (["-v", "relative"], "is not absolute"),
        (["-v", "/no/such/host/dir:/c"], "/no/such/host/dir"),
    ],
)
def test_bad_mount_specs_are_clear(rb, rootfs, args, message):
    r = rb("run", "--rootfs", rootfs, *args, "--", "true")
    assert r.rc == 125, r
    assert message in r.err, r
    assert names(rb) == []


def test_volume_commands(rb, store):
    r = rb("volume", "create", "v1", "--label", "team=a")
    assert r.rc == 0 and r.out == "v1\n", r
    r = rb("volume", "create", "v1")
    assert r.rc == 0 and r.out == "v1\n", "create of an existing volume is idempotent"
    r = rb("volume", "create")
    assert r.rc == 0, r
    anon = r.out.strip()
    assert len(anon) == 64, r
    r = rb("volume", "ls")
    assert r.lines[0].split() == ["DRIVER", "VOLUME", "NAME"], r
    assert sorted(l.split()[1] for l in r.lines[1:]) == sorted(["v1", anon]), r
    r = rb("volume", "ls", "--format", "json")
    assert {v["Name"] for v in json.loads(r.out)} == {"v1", anon}, r
    r = rb("volume", "inspect", "v1")
    assert r.rc == 0, r
    info = json.loads(r.out)[0]
    assert info["Name"] == "v1" and info["Driver"] == "local" and info["Labels"] == {"team": "a"}, info
    assert info["Mountpoint"] == str(store / "volumes" / "v1" / "_data"), info
    assert os.path.isdir(info["Mountpoint"])
    r = rb("volume", "inspect", "nope")
    assert r.rc == 1 and "no such volume: nope" in r.err, r
    r = rb("volume", "rm", "nope")
    assert r.rc == 1 and "no such volume: nope" in r.err, r
    r = rb("volume", "create", "-x")
    assert r.rc != 0, r
    r = rb("volume", "create", "a/b")
    assert r.rc == 125 and "invalid volume name" in r.err, r
    # prune: created (never anonymous-by-mount) volumes stay without --all.
    r = rb("volume", "prune")
    assert r.rc == 0 and r.out == "", r
    r = rb("volume", "prune", "--all")
    assert r.rc == 0 and sorted(r.lines) == sorted(["v1", anon]), r
    assert names(rb) == []
    mode = os.stat(store / "volumes").st_mode & 0o777
    assert mode == 0o700, oct(mode)
