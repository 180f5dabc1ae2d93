"""containers.run / create / get / list, Container verbs, exec_run, logs, errors."""

from __future__ import annotations

import json
import os
import time

import pytest

import rootbox
from conftest import IMAGE


def test_run_returns_output(client):
    assert client.containers.run(IMAGE, "echo hello", remove=True) == b"hello\n"
    # stderr only when asked, after stdout
    out = client.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], remove=True, stderr=True)
    assert out == b"out\nerr\n"
    out = client.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], remove=True, stdout=False, stderr=True)
    assert out == b"err\n"


def test_run_options_reach_the_container(client, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    os.chmod(host, 0o777)
    out = client.containers.run(
        IMAGE,
        ["sh", "-c", "echo $GREETING; pwd; cat /data/in.txt; echo written > /data/out.txt; hostname"],
        environment={"GREETING": "hi there"},
        working_dir="/tmp",
        volumes={str(host): {"bind": "/data", "mode": "rw"}},
        hostname="pybox",
        remove=True,
    )
    assert out.decode().split("\n") == ["hi there", "/tmp", "from host", "pybox", ""]
    assert (host / "out.txt").read_text() == "written\n"
    # read-only volume: the write fails inside
    with pytest.raises(rootbox.ContainerError) as ei:
        client.containers.run(IMAGE, ["sh", "-c", "echo x > /data/x"], volumes=[f"{host}:/data:ro"], remove=True)
    assert b"Read-only file system" in ei.value.stderr
    assert not (host / "x").exists()


def test_run_without_remove_keeps_container(client):
    out = client.containers.run(IMAGE, "echo kept", name="kept1")
    assert out == b"kept\n"
    c = client.containers.get("kept1")
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 0
    assert c in client.containers.list(all=True)
    assert c not in client.containers.list()
    c.remove()
    with pytest.raises(rootbox.ContainerNotFound):
        client.containers.get("kept1")


def test_nonzero_exit_raises_container_error(client):
    with pytest.raises(rootbox.ContainerError) as ei:
        client.containers.run(IMAGE, ["sh", "-c", "echo bad thing >&2; exit 3"], remove=True)
    e = ei.value
    assert e.exit_status == 3
    assert e.stderr == b"bad thing\n"
    assert e.image == IMAGE
    assert e.command == ["sh", "-c", "echo bad thing >&2; exit 3"]
    assert isinstance(e, rootbox.RootboxError)
    assert "bad thing" in str(e)
    # kept (not removed): the error holds the container
    with pytest.raises(rootbox.ContainerError) as ei:
        client.containers.run(IMAGE, "false")
    assert ei.value.exit_status == 1
    assert ei.value.container is not None and ei.value.container.status == "exited"


def test_missing_command_is_exit_127(client):
    with pytest.raises(rootbox.ContainerError) as ei:
        client.containers.run(IMAGE, "/no/such/program", remove=True)
    assert ei.value.exit_status == 127
    assert b"/no/such/program" in ei.value.stderr


def test_unknown_image_raises_image_not_found(client):
    with pytest.raises(rootbox.ImageNotFound) as ei:
        client.containers.run("no/such-image:9", "true")
    assert "no/such-image" in str(ei.value)
    assert isinstance(ei.value, rootbox.NotFound)
    with pytest.raises(rootbox.ImageNotFound):
        client.images.get("no/such-image:9")


def test_unknown_container_raises_container_not_found(client):
    with pytest.raises(rootbox.ContainerNotFound):
        client.containers.get("nosuchcontainer")
    with pytest.raises(rootbox.NotFound):
        client._rt.wait("nosuchcontainer", 1.0)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"mem_limit": "lots"}, "lots"),
        ({"name": "-bad name"}, "-bad name"),
        ({"ports": {"80/tcp": "notaport"}}, "notaport"),
        ({"environment": {"": "x"}}, "environment"),
        ({"nano_cpus": -5}, "nano_cpus"),
    ],
)
def test_bad_arguments_raise_value_error(client, kwargs, needle):
    with pytest.raises(ValueError) as ei:
        client.containers.run(IMAGE, "true", remove=True, **kwargs)
    assert needle in str(ei.value)
    assert isinstance(ei.value, rootbox.RootboxError)
    # nothing was left behind
    assert client.containers.list(all=True) == []


def test_unknown_network_is_not_found(client):
    with pytest.raises(rootbox.NotFound) as ei:
        client.containers.run(IMAGE, "true", network_mode="carrier-pigeon", remove=True)
    assert "carrier-pigeon" in str(ei.value)


def test_bad_types_raise_type_error(client):
    with pytest.raises(TypeError):
        client.containers.run(IMAGE, 42, remove=True)
    with pytest.raises(TypeError):
        client.containers.run(IMAGE, "true", no_such_option=1)
    with pytest.raises(ValueError):
        client.containers.run("", "true")


def test_detach_logs_wait(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "echo one; echo two >&2; sleep 0.3; echo three; exit 5"], detach=True)
    assert isinstance(c, rootbox.Container)
    assert c.status == "running"
    assert len(c.id) == 64 and c.short_id == c.id[:12]
    assert c.wait(timeout=30) == {"StatusCode": 5, "Error": None}
    assert c.status == "exited"
    assert c.logs() == b"one\ntwo\nthree\n"
    assert c.logs(stderr=False) == b"one\nthree\n"
    assert c.logs(stdout=False) == b"two\n"
    assert c.logs(tail=1) == b"three\n"
    ts = c.logs(timestamps=True).decode().splitlines()
    assert ts[0].endswith(" one") and ts[0][:4].isdigit()
    c.remove()


def test_logs_stream_follows(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"], detach=True)
    got = b"".join(c.logs(stream=True, follow=True))
    assert got == b"line1\nline2\nline3\n"
    assert c.wait()["StatusCode"] == 0


def test_run_stream(client):
    chunks = list(client.containers.run(IMAGE, ["sh", "-c", "echo a; sleep 0.2; echo b"], stream=True, remove=True))
    assert b"".join(chunks) == b"a\nb\n"
    assert client.containers.list(all=True) == []
    with pytest.raises(rootbox.ContainerError) as ei:
        list(client.containers.run(IMAGE, ["sh", "-c", "echo e >&2; exit 2"], stream=True, remove=True))
    assert ei.value.exit_status == 2 and ei.value.stderr == b"e\n"


def test_wait_timeout(client):
    c = client.containers.run(IMAGE, "sleep 30", detach=True)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        c.wait(timeout=0.5)
    assert time.monotonic() - t < 5
    c.kill()
    assert c.wait(timeout=30)["StatusCode"] == 137


def test_stop_kill_restart_remove(client):
    # --init: PID 1 forwards SIGTERM to sleep (a bare PID 1 ignores it, as in Docker)
    c = client.containers.run(IMAGE, "sleep 60", detach=True, name="lifecycle1", init=True)
    assert c.status == "running"
    t = time.monotonic()
    c.stop(timeout=1)
    assert time.monotonic() - t < 10
    assert c.status == "exited"
    c.start()
    assert c.status == "running"
    c.kill(signal="SIGTERM")
    assert c.wait(timeout=30)["StatusCode"] == 143
    with pytest.raises(rootbox.RuntimeFailure):
        c.kill()  # not running
    c.restart()
    assert c.status == "running"
    with pytest.raises(rootbox.RuntimeFailure) as ei:
        c.remove()  # running: needs force
    assert "stop it first" in str(ei.value)
    c.rename("lifecycle2")
    assert client.containers.get("lifecycle2").id == c.id
    c.remove(force=True)
    assert client.containers.list(all=True) == []


def test_create_then_start(client):
    c = client.containers.create(IMAGE, ["sh", "-c", "echo created-run"], name="made")
    assert c.status == "created"
    assert c.name == "made"
    c.start()
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs() == b"created-run\n"


def test_name_conflict(client):
    c = client.containers.run(IMAGE, "sleep 30", detach=True, name="taken")
    with pytest.raises(rootbox.Conflict) as ei:
        client.containers.run(IMAGE, "true", name="taken")
    assert "taken" in str(ei.value)
    c.remove(force=True)


def test_attrs_and_reload(client):
    c = client.containers.run(IMAGE, ["sleep", "30"], detach=True, environment=["A=1"], init=True)
    assert c.attrs["Config"]["Cmd"] == ["sleep", "30"]
    assert "A=1" in c.attrs["Config"]["Env"]
    assert c.attrs["HostConfig"]["Init"] is True
    assert c.attrs["State"]["Pid"] > 0
    assert c.image is not None and IMAGE in c.image.tags
    top = c.top()
    assert any("sleep 30" in p[-1] for p in top["Processes"])
    c.kill()
    c.wait()
    assert c.attrs["State"]["Running"] is False


def test_exec_run_exit_codes_and_output(client):
    c = client.containers.run(IMAGE, "sleep 60", detach=True)
    r = c.exec_run("echo hi")
    assert r == (0, b"hi\n")
    assert r.exit_code == 0 and r.output == b"hi\n"
    assert c.exec_run(["sh", "-c", "exit 42"]).exit_code == 42
    code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert (code, out, err) == (0, b"o\n", b"e\n")
    r = c.exec_run(["sh", "-c", "echo $X in $(pwd) as $(id -u)"], environment={"X": "val"}, workdir="/tmp", user="0")
    assert r == (0, b"val in /tmp as 0\n")
    c.remove(force=True)


def test_exec_run_missing_program_raises(client):
    c = client.containers.run(IMAGE, "sleep 60", detach=True)
    with pytest.raises(rootbox.RuntimeFailure) as ei:
        c.exec_run("/no/such/exe")
    assert ei.value.exit_code == 127
    c.remove(force=True)


def test_exec_run_stream_gives_exit_code(client):
    c = client.containers.run(IMAGE, "sleep 60", detach=True)
    r = c.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b; exit 9"], stream=True)
    assert r.exit_code is None
    chunks = list(r.output)
    assert b"".join(chunks) == b"a\nb\n"
    assert r.output.exit_code == 9
    assert r.output.wait() == 9
    c.remove(force=True)


def test_exec_on_stopped_container_fails(client):
    c = client.containers.run(IMAGE, "true", detach=True)
    c.wait()
    with pytest.raises(rootbox.RuntimeFailure) as ei:
        c.exec_run("true")
    assert "running" in str(ei.value)


def test_errors_carry_core_details(client):
    with pytest.raises(rootbox.RootboxError) as ei:
        client.containers.run(IMAGE, "true", volumes=["/no/such/dir:/x"], remove=True)
    assert "/no/such/dir" in str(ei.value)


def test_shortcut_and_from_env(store, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOTBOX_ROOT", str(store))
    monkeypatch.setenv("ROOTBOX_STATE_DIR", str(tmp_path / "st"))
    c = rootbox.from_env()
    assert c.root == str(store)
    assert rootbox.run(IMAGE, "echo short", remove=True) == b"short\n"
    assert rootbox.Client.from_env({"ROOTBOX_ROOT": "/x/y"}).root == "/x/y"


def test_inspect_json_matches_cli_shape(client):
    c = client.containers.run(IMAGE, "true", detach=True, name="shape")
    c.wait()
    c.reload()
    for key in ("Id", "Created", "State", "Config", "HostConfig", "Mounts", "NetworkSettings"):
        assert key in c.attrs
    json.dumps(c.attrs)
