"""Resource limits on this host (hybrid cgroups, nothing delegated): containers still run, a
limit that cannot be enforced is refused before the start with a message saying why and how to
fix it, the opt-out runs it without, and bad limits are clear errors. The enforced limits
themselves are tested in the cgroup v2 VM (tests/vm/cgroup-test.sh).

Nothing here may create anything under the host's /sys/fs/cgroup: a fixture checks."""

from __future__ import annotations

import json
import os
import signal

import pytest

from util import run


def _layout():
    """(layout, cgroup2 mount, v1 controllers) from /proc/self/mountinfo."""
    v2 = []
    v1 = set()
    known = {"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "net_cls",
             "net_prio", "perf_event", "hugetlb", "rdma", "misc"}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, opts = (right.split() + ["", "", ""])[:3]
            if fstype == "cgroup2":
                v2.append(left.split()[4])
            elif fstype == "cgroup":
                v1 |= set(opts.split(",")) & known
    if v2 and v1:
        layout = "hybrid"
    elif v2:
        layout = "v2"
    elif v1:
        layout = "v1"
    else:
        layout = "none"
    mount = "/sys/fs/cgroup" if "/sys/fs/cgroup" in v2 else ("/sys/fs/cgroup/unified" if "/sys/fs/cgroup/unified" in v2 else (v2[0] if v2 else None))
    return layout, mount, sorted(v1)


LAYOUT, CG2, V1 = _layout()
# The tests about refusing limits are meaningful where nothing is delegated: these hosts.
no_delegation = pytest.mark.skipif(LAYOUT in ("v2",), reason="cgroup v2 host: limits may be enforceable (tested in the VM)")


def _cgroup_tree():
    if not CG2:
        return set()
    out = set()
    for dirpath, dirnames, _ in os.walk(CG2):
        for d in dirnames:
            out.add(os.path.join(dirpath, d))
    return out


@pytest.fixture(autouse=True)
def _host_cgroups_untouched():
    before = _cgroup_tree()
    yield
    if LAYOUT == "hybrid":
        new = _cgroup_tree() - before
        assert not new, f"cgroups were created on the host's hierarchy: {sorted(new)}"


def test_info_json_reports_layout(rootbox):
    r = rootbox("info", "--json")
    assert r.rc == 0, r
    cg = json.loads(r.out)["cgroup"]
    assert cg["version"] == LAYOUT, cg
    assert cg["cgroup2_mount"] == CG2, cg
    assert sorted(cg["v1_controllers"]) == V1, cg
    limits = {lim["controller"]: lim for lim in cg["limits"]}
    assert set(limits) == {"memory", "cpu", "cpuset", "pids", "io"}, cg
    if LAYOUT == "hybrid":
        assert cg["delegated"] is None and cg["manager"] == "none", cg
        for c, lim in limits.items():
            assert lim["enforceable"] is False, lim
            assert "hybrid" in lim["reason"] and c in lim["reason"], lim
        assert "Delegate=" in cg["note"] and "best-effort" in cg["note"], cg


def test_info_text_says_what_limits_do(rootbox):
    r = rootbox("info")
    assert r.rc == 0, r
    assert f"cgroup version:    {LAYOUT}" in r.out, r
    assert "limits:" in r.out and "memory" in r.out, r
    if LAYOUT == "hybrid":
        assert "v1 controllers:" in r.out and "hybrid" in r.out, r


def test_no_limit_runs(box):
    r = box("sh", "-c", "echo hello; cat /proc/self/cgroup")
    assert r.rc == 0 and "hello" in r.out, r
    assert r.err == "", r


@no_delegation
def test_memory_limit_refused_before_start(box, tmp_path):
    marker = tmp_path / "vol"
    marker.mkdir()
    os.chmod(marker, 0o777)
    r = box("sh", "-c", "echo started; touch /v/started", opts=["--memory", "32m", "-v", f"{marker}:/v"])
    assert r.rc == 125, r
    assert "started" not in r.out and not (marker / "started").exists(), f"the container ran:{r}"
    err = r.err
    assert "cannot enforce the requested memory limit" in err, r
    assert "memory.max" in err, r
    if LAYOUT == "hybrid":
        assert "hybrid" in err and "v1" in err, r
    assert "Delegate=" in err and "systemctl edit user@.service" in err, r
    assert "--cgroup-limits=best-effort" in err, r


@no_delegation
@pytest.mark.parametrize(
    "opts,controller",
    [
        (["--pids-limit", "20"], "pids"),
        (["--cpus", "0.5"], "cpu"),
        (["--cpu-shares", "512"], "cpu"),
        (["--cpuset-cpus", "0"], "cpuset"),
        (["--blkio-weight", "300"], "io"),
        (["--memory-reservation", "16m"], "memory"),
    ],
)
def test_each_limit_names_its_controller(box, opts, controller):
    r = box("echo", "started", opts=opts)
    assert r.rc == 125 and "started" not in r.out, r
    assert f"cannot enforce the requested {controller} limit" in r.err, r


@no_delegation
def test_best_effort_runs_without_the_limit(box, rootbox, rootfs):
    r = box("echo", "started", opts=["--memory", "32m", "--pids-limit", "10", "--cgroup-limits=best-effort"])
    assert r.rc == 0 and r.out.strip() == "started", r
    assert "warning" in r.err and "memory" in r.err and "pids" in r.err, r
    # The same through the environment (what the C/Python front doors and scripts use).
    r = rootbox("run", "--rootfs", rootfs, "--memory", "32m", "--", "echo", "started",
                env={"ROOTBOX_CGROUP_LIMITS": "best-effort"})
    assert r.rc == 0 and r.out.strip() == "started", r
    assert "warning" in r.err, r


@no_delegation
def test_disabled_manager_with_a_limit(box):
    r = box("true", opts=["--cgroup-manager", "disabled", "--memory", "32m"])
    assert r.rc == 125 and "disabled" in r.err, r
    r = box("echo", "ok", opts=["--cgroup-manager", "disabled"])
    assert r.rc == 0 and r.out.strip() == "ok", r


@pytest.mark.parametrize(
    "opts,words",
    [
        (["--memory", "12q"], ["--memory", "12q", "unit"]),
        (["--memory", "-5m"], ["--memory", "-5m"]),
        (["--memory", "0"], ["--memory", "greater than 0"]),
        (["--cpus", "-1"], ["--cpus", "-1", "greater than 0"]),
        (["--cpus", "lots"], ["--cpus", "lots"]),
        (["--cpu-shares", "1"], ["--cpu-shares", "262144"]),
        (["--cpuset-cpus", "0-x"], ["--cpuset-cpus", "0-x"]),
        (["--pids-limit", "many"], ["--pids-limit", "many"]),
        (["--blkio-weight", "5000"], ["--blkio-weight", "1000"]),
        (["--memory-swap", "64m"], ["--memory-swap", "--memory"]),
        (["--cpus", "1", "--cpu-quota", "50000"], ["--cpus", "--cpu-quota"]),
        (["--cgroup-limits", "sometimes"], ["--cgroup-limits", "sometimes"]),
        (["--cgroup-manager", "magic"], ["cgroup manager", "magic"]),
        (["--cgroup-parent", "../x"], ["--cgroup-parent", "../x"]),
    ],
)
def test_bad_limits_are_clear_errors(box, opts, words):
    r = box("echo", "started", opts=opts)
    assert r.rc == 125, r
    assert "started" not in r.out, r
    for w in words:
        assert w in r.err, f"{w!r} not in the error:{r}"


def test_human_sizes_accepted(box):
    """Sizes parse (the limit itself is then refused or applied depending on the host)."""
    for size in ("64m", "1g", "1.5g", "512k", "67108864", "64MiB"):
        r = box("true", opts=["--memory-reservation", size, "--cgroup-limits=best-effort"])
        assert r.rc == 0, r


# --- rootbox-runtime -------------------------------------------------------------------------


def _with_resources(resources, annotations=None):
    def edit(cfg):
        cfg["linux"]["resources"] = resources
        if annotations:
            cfg["annotations"] = annotations

    return edit


def test_runtime_device_rules_are_not_limits(runtime, make_bundle):
    """Engines always send device rules (runc's template has one): never a reason to refuse."""
    b = make_bundle(["echo", "ran"], edit=_with_resources({"devices": [{"allow": False, "access": "rwm"}]}))
    r = runtime("run", "--bundle", b, "dev1")
    assert r.rc == 0 and "ran" in r.out, r


@no_delegation
def test_runtime_memory_limit_refused(runtime, make_bundle):
    b = make_bundle(["echo", "ran"], edit=_with_resources({"memory": {"limit": 33554432}}))
    r = runtime("create", "--bundle", b, "m1")
    assert r.rc != 0, r
    assert "cannot enforce the requested memory limit" in r.err, r
    assert "ROOTBOX_CGROUP_LIMITS=best-effort" in r.err, r
    assert runtime("state", "m1").rc != 0, "a refused create left state behind"


@no_delegation
def test_runtime_best_effort_annotation_and_env(runtime, make_bundle):
    b = make_bundle(["echo", "ran"], edit=_with_resources(
        {"memory": {"limit": 33554432}, "pids": {"limit": 10}},
        {"io.rootbox.cgroup-limits": "best-effort"}))
    r = runtime("run", "--bundle", b, "be1")
    assert r.rc == 0 and "ran" in r.out and "warning" in r.err, r
    b = make_bundle(["echo", "ran"], edit=_with_resources({"memory": {"limit": 33554432}}))
    r = runtime("run", "--bundle", b, "be2", env={"ROOTBOX_CGROUP_LIMITS": "best-effort"})
    assert r.rc == 0 and "ran" in r.out, r


@no_delegation
def test_runtime_cgroup_verbs_say_why(runtime, make_bundle):
    b = make_bundle(["sleep", "60"])
    assert runtime("create", "--bundle", b, "v1").rc == 0
    assert runtime("start", "v1").rc == 0
    st = json.loads(runtime("state", "v1").out)
    assert "cgroup" not in st, st
    for args in (["update", "--memory", "64m", "v1"], ["events", "--stats", "v1"], ["pause", "v1"]):
        r = runtime(*args)
        assert r.rc != 0, r
        assert "cgroup" in r.err and "rootbox info" in r.err, r
    assert json.loads(runtime("state", "v1").out)["status"] == "running"
    r = runtime("update", "--memory", "12q", "v1")
    assert r.rc != 0 and "12q" in r.err, r


@no_delegation
def test_pause_without_a_cgroup(rootbox, box_args, background):
    b = background(box_args("sh", "-c", "echo ready; exec sleep 60", opts=["--name", "frozen"]))
    b.wait_for("ready")
    r = rootbox("pause", "frozen")
    assert r.rc == 1 and "frozen" in r.err and "cgroup" in r.err, r
    r = rootbox("unpause", "frozen")
    assert r.rc == 1 and "frozen" in r.err and "paused" in r.err, r
    r = rootbox("pause", "nosuch")
    assert r.rc == 1 and "nosuch" in r.err, r
    os.kill(b.container_init(), signal.SIGKILL)


@no_delegation
def test_stats_without_a_cgroup(rootbox, box_args, background):
    b = background(box_args("sh", "-c", "echo ready; exec sleep 60", opts=["--name", "statsless"]))
    b.wait_for("ready")
    r = rootbox("stats", "--no-stream", "statsless")
    assert r.rc != 0, r
    assert "statsless" in r.err and "cgroup" in r.err, r
    r = rootbox("stats", "--no-stream", "nosuch")
    assert r.rc != 0 and "nosuch" in r.err, r
    os.kill(b.container_init(), signal.SIGKILL)
    b.finish(timeout=10)
