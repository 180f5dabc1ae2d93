"""Layered root filesystems: `rootbox run --rootfs-overlay lower=...,upper=...,work=...` with
each storage driver (kernel overlayfs in the user namespace, fuse-overlayfs, vfs copy), the
generated /etc files, and the OCI annotation path of rootbox-runtime."""

import json
import os
import pathlib
import stat
import subprocess
import time

import pytest

from layered import (  # noqa: F401  (fixtures)
    DRIVERS,
    MERGED_DATA,
    lowers,
    new_box,
    rb,
    require_driver,
    store,
    tree_digest,
)

LIST_DATA = "cd /data && find . | sort | sed 's|^./||' | grep -v '^[.]$'; cat same"


@pytest.mark.parametrize("driver", DRIVERS)
def test_container_sees_the_merged_tree(rb, new_box, lowers, driver):
    require_driver(driver)
    box = new_box()
    r = rb("run", *box.opts(driver), "--", "sh", "-c", LIST_DATA + "; test -e /etc/group || echo nogroup")
    assert r.rc == 0, r
    assert r.lines == MERGED_DATA + ["two", "nogroup"], r


@pytest.mark.parametrize("driver", DRIVERS)
def test_writes_land_in_upper_and_layers_stay_unchanged(rb, new_box, lowers, driver):
    require_driver(driver)
    before = [tree_digest(l) for l in lowers]
    box = new_box()
    r = rb(
        "run", *box.opts(driver), "--", "sh", "-c",
        "echo hello > /written && rm /data/new && echo changed > /data/same && rm -r /data/old "
        "&& mkdir /data/old && echo fresh > /data/old/x && cat /written /data/same /data/old/x",
    )
    assert r.rc == 0, r
    assert r.lines == ["hello", "changed", "fresh"], r
    assert [tree_digest(l) for l in lowers] == before, "a layer was modified"
    assert (box.upper / "written").read_text() == "hello\n"
    assert (box.upper / "data" / "same").read_text() == "changed\n"
    if driver != "vfs":
        st = os.lstat(box.upper / "data" / "new")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "no whiteout in the upper layer"
    # The same upper again: the container's changes persist, the lowers still untouched.
    r = rb("run", *box.opts(driver), "--", "sh", "-c", LIST_DATA + "; cat /written")
    assert r.rc == 0, r
    assert r.lines == ["old", "old/x", "same", "changed", "hello"], r


@pytest.mark.parametrize("driver", DRIVERS)
def test_two_containers_do_not_see_each_others_writes(rb, new_box, driver):
    require_driver(driver)
    a, b = new_box(), new_box()
    r = rb("run", *a.opts(driver), "--", "sh", "-c", "echo a > /only-a; rm /data/same")
    assert r.rc == 0, r
    r = rb("run", *b.opts(driver), "--", "sh", "-c", "ls /only-a 2>&1; cat /data/same")
    assert r.rc != 0 or "No such file" in r.out, r
    assert "two" in r.lines, r
    assert not (b.upper / "only-a").exists()


def test_kernel_overlay_is_probed_and_cached(rb, store):
    r = rb("info", "--json")
    assert r.rc == 0, r
    ov = json.loads(r.out)["overlay"]
    # The machines here allow overlayfs in a user namespace (see the brief).
    assert ov["kernel_userns_overlay"] is True, ov
    assert ov["storage_driver"] == "overlay", ov
    cache = pathlib.Path(ov["probe_cache"])
    assert cache.parent == store / "cache", ov
    cached = json.loads(cache.read_text())
    assert cached["works"] is True and cached["kernel"] == os.uname().release
    # A cached answer is used as it is (the probe does not run again).
    cached["detail"] = "from the cache"
    cached["works"] = False
    cache.write_text(json.dumps(cached))
    r = rb("info", "--json")
    ov = json.loads(r.out)["overlay"]
    assert ov["probe"] == "from the cache" and ov["kernel_userns_overlay"] is False, ov
    assert ov["storage_driver"] in ("fuse-overlayfs", "vfs"), ov
    r = rb("info")
    assert "kernel overlayfs in a user namespace: no (from the cache)" in r.out, r


def test_auto_driver_uses_kernel_overlay(rb, new_box):
    box = new_box()
    r = rb("run", *box.opts(), "--", "sh", "-c", "grep ' / ' /proc/self/mountinfo")
    assert r.rc == 0, r
    assert " - overlay " in r.out, r


def test_forced_drivers_really_differ(rb, new_box):
    require_driver("fuse-overlayfs")
    seen = {}
    for driver in DRIVERS:
        box = new_box()
        r = rb("run", *box.opts(driver), "--", "sh", "-c", "grep ' / ' /proc/self/mountinfo")
        assert r.rc == 0, r
        seen[driver] = r.out
    assert " - overlay " in seen["overlay"], seen
    assert "fuse-overlayfs" in seen["fuse-overlayfs"], seen
    assert " - overlay " not in seen["vfs"] and "fuse" not in seen["vfs"], seen


def test_fuse_overlayfs_goes_away_with_the_container(rb, new_box):
    require_driver("fuse-overlayfs")
    box = new_box()
    r = rb("run", *box.opts("fuse-overlayfs"), "--", "true")
    assert r.rc == 0, r
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", f"fuse-overlayfs.*{box.upper}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"fuse-overlayfs still runs: {left.stdout}"


@pytest.mark.unprivileged
def test_fuse_overlayfs_failure_is_reported(rb, new_box):
    require_driver("fuse-overlayfs")
    box = new_box()
    spec = "lower={},upper=/root,work={}".format(":".join(map(str, box.lowers)), box.work)
    r = rb("run", "--rootfs", box.mnt, "--rootfs-overlay", spec, "--storage-driver", "fuse-overlayfs", "--", "true")
    assert r.rc == 125, r
    assert "fuse-overlayfs failed" in r.err and "upper /root" in r.err, r
    assert "Permission denied" in r.err, "fuse-overlayfs's own message is not shown"


def test_mount_is_private_to_the_container(rb, new_box, background, bins, store):
    box = new_box()
    b = background(
        [bins.rootbox, "run", *box.opts(), "--", "sh", "-c", "trap 'exit 0' TERM; echo up; sleep 10 & wait"],
        env={"ROOTBOX_ROOT": str(store)},
    )
    b.wait_for("up")
    with open("/proc/self/mountinfo") as f:
        host = f.read()
    assert str(box.mnt) not in host, "the overlay is visible on the host"
    assert os.listdir(box.mnt) == []
    b.signal(15)
    b.finish()


def test_twenty_concurrent_runs_on_the_same_lowers(bins, new_box, store, xdg_runtime_dir, lowers):
    before = [tree_digest(l) for l in lowers]
    env = dict(os.environ, XDG_RUNTIME_DIR=xdg_runtime_dir, ROOTBOX_ROOT=str(store))
    boxes = [new_box() for _ in range(20)]
    procs = [
        subprocess.Popen(
            [bins.rootbox, "run", *box.opts(), "--", "sh", "-c", f"echo {i} > /mine; cat /mine /data/same"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        for i, box in enumerate(boxes)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"run {i}: rc={p.returncode}\n{out}\n{err}"
        assert out.split() == [str(i), "two"], f"run {i}: {out!r} {err!r}"
    for i, box in enumerate(boxes):
        assert (box.upper / "mine").read_text() == f"{i}\n"
    assert [tree_digest(l) for l in lowers] == before


# --- generated /etc files ---------------------------------------------------


def test_generated_etc_files_layered(rb, new_box, lowers):
    box = new_box()
    r = rb("run", *box.opts(), "--hostname", "web1", "--", "sh", "-c",
           "cat /etc/hostname; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf")
    assert r.rc == 0, r
    hostname, hosts, resolv = r.out.split("---\n")
    assert hostname == "web1\n", r
    lines = [l.split() for l in hosts.splitlines()]
    assert ["127.0.0.1", "localhost"] in lines, r
    assert any(l[0] == "::1" and "localhost" in l for l in lines), r
    assert any("web1" in l[1:] for l in lines), r
    servers = [l.split()[1] for l in resolv.splitlines() if l.startswith("nameserver")]
    assert servers, r
    assert not any(s.startswith("127.") or s == "::1" for s in servers), f"loopback DNS in an isolated netns:{r}"
    # Mounted over the image's files: nothing copied up, the layer unchanged.
    assert not (box.upper / "etc" / "hosts").exists()
    assert (lowers[0] / "etc" / "hostname").read_text() == "rootbox\n"


def test_generated_etc_files_plain_rootfs_untouched(rb, rootfs):
    before = tree_digest(rootfs / "etc")
    r = rb("run", "--rootfs", rootfs, "--hostname", "plain", "--", "sh", "-c",
           "cat /etc/hostname; grep -c plain /etc/hosts; echo changed > /etc/hosts; cat /etc/hosts")
    assert r.rc == 0, r
    assert r.lines == ["plain", "1", "changed"], r
    assert tree_digest(rootfs / "etc") == before, "the user's rootfs directory was modified"


def test_plain_rootfs_without_etc_files_is_not_written(rb, rootfs):
    (rootfs / "etc" / "hosts").unlink()
    r = rb("run", "--rootfs", rootfs, "--", "sh", "-c", "cat /etc/hostname; test -e /etc/hosts || echo nohosts")
    assert r.rc == 0, r
    assert r.lines[-1] == "nohosts", r
    assert not (rootfs / "etc" / "hosts").exists()


def test_network_host_keeps_the_hosts_resolv_conf(rb, rootfs):
    r = rb("run", "--rootfs", rootfs, "--network", "host", "--", "cat", "/etc/resolv.conf")
    assert r.rc == 0, r
    with open("/etc/resolv.conf") as f:
        assert r.out == f.read()


# --- bad input ----------------------------------------------------------------


def test_bad_layer_specs_are_clear(rb, new_box, tmp_path):
    box = new_box()
    missing = tmp_path / "nope"
    spec = f"lower={missing},upper={box.upper},work={box.work}"
    r = rb("run", "--rootfs", box.mnt, "--rootfs-overlay", spec, "--", "true")
    assert r.rc == 125, r
    assert str(missing) in r.err and "does not exist" in r.err, r
    r = rb("run", "--rootfs", box.mnt, "--rootfs-overlay", f"lower={box.upper}", "--", "true")
    assert r.rc == 125 and "upper=... is missing" in r.err, r
    r = rb("run", *box.opts("zfs"), "--", "true")
    assert r.rc == 125 and "zfs" in r.err and "overlay, fuse-overlayfs, vfs" in r.err, r
    r = rb("run", "--rootfs", box.mnt, "--storage-driver", "vfs", "--", "true")
    assert r.rc == 125 and "--rootfs-overlay" in r.err, r
    spec = f"lower={box.lowers[0]},upper={box.upper},work={box.upper}"
    r = rb("run", "--rootfs", box.mnt, "--rootfs-overlay", spec, "--", "true")
    assert r.rc == 125 and "upper and work must be different" in r.err, r


# --- the OCI runtime path -------------------------------------------------------


def test_runtime_mounts_layers_from_the_annotation(runtime, make_bundle, new_box, store):
    box = new_box()

    def edit(cfg):
        cfg["root"]["path"] = str(box.mnt)
        cfg.setdefault("annotations", {})["io.rootbox.rootfs.layers"] = json.dumps(
            {"lower": [str(l) for l in box.lowers], "upper": str(box.upper), "work": str(box.work)}
        )

    bundle = make_bundle(["sh", "-c", LIST_DATA + "; echo x > /from-runtime"], edit=edit)
    r = runtime("run", "--bundle", bundle, "lay1", env={"ROOTBOX_ROOT": str(store)})
    assert r.rc == 0, r
    assert r.lines == MERGED_DATA + ["two"], r
    assert (box.upper / "from-runtime").exists()

    bundle = make_bundle(["true"], edit=lambda c: (edit(c), c["annotations"].update({"io.rootbox.rootfs.layers": "{"})))
    r = runtime("run", "--bundle", bundle, "lay2", env={"ROOTBOX_ROOT": str(store)})
    assert r.rc != 0 and "io.rootbox.rootfs.layers" in r.err, r

