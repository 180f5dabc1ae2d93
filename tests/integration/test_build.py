"""rootbox build: the seed-style app from a Dockerfile (FROM a local busybox image, WORKDIR,
ADD ., ENV, EXPOSE, CMD) builds and runs; multi-stage builds copy only the artifact; a
rebuild is all CACHED and fast; changing one copied file rebuilds from that step on;
.dockerignore is honoured; a failing RUN fails the build with its output and exit code and
leaves the previous tag alone; history lists the steps; bad Dockerfiles name their line."""

import gzip
import io
import json
import os
import signal
import subprocess
import tarfile
import tempfile
import time

import pytest

import imagebuild as ib
from util import _base_env, run, subids_missing_reason

BASE = "test/busybox:1"

APP = """#!/bin/sh
echo "Hello $NAME from $(hostname -s 2>/dev/null || echo box)!"
echo "greeting: $(cat /app/greeting.txt)"
"""

SEED = """# The seed's example, with a local busybox base and a shell script as the app.
FROM test/busybox:1

# Set the working directory to /app
WORKDIR /app

# Copy the current directory contents into the container at /app
ADD . /app

# Install what the app needs (here: make it executable)
RUN chmod +x app.sh && \\
    echo installed > /app/installed

# Make port 80 available to the world outside this container
EXPOSE 80

# Define environment variable
ENV NAME World

# Run app.sh when the container launches
CMD ["/app/app.sh"]
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    ib.write_docker_archive(d / "busybox.tar", ib.busybox_image(), [BASE])
    return d / "busybox.tar"


@pytest.fixture
def rb(bins, tmp_path, xdg_runtime_dir, archive):
    store = tmp_path / "store"
    state = tmp_path / "state"
    env = {"XDG_RUNTIME_DIR": xdg_runtime_dir, "ROOTBOX_ROOT": str(store), "ROOTBOX_STATE_DIR": str(state)}

    def call(*args, **kw):
        return run([bins.rootbox, *args], env=env, **kw)

    call.store = store
    call.env = env
    r = call("load", "-i", archive)
    assert r.rc == 0, r
    yield call
    for cid in call("ps", "-aq", "--no-trunc").out.split():
        call("rm", "-f", cid)
    # Layers hold files of subordinate ids, which only rootbox can remove (in the user
    # namespace): pytest's own clean-up of tmp_path cannot.
    call("builder", "prune")
    call("image", "prune", "-a")


def ok(r):
    assert r.rc == 0, r
    return r


def app_context(tmp_path, dockerfile=SEED):
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "app.sh").write_text(APP)
    (ctx / "greeting.txt").write_text("hi there\n")
    return ctx


def steps(out):
    return [l for l in out.splitlines() if l.startswith("STEP ")]


def image_id(out):
    return out.strip().splitlines()[-1]


def config_of(rb, ref):
    r = ok(rb("image", "inspect", ref))
    data = json.loads(r.out)
    return data[0] if isinstance(data, list) else data


def test_seed_app_builds_and_runs(rb, tmp_path):
    ctx = app_context(tmp_path)
    r = ok(rb("build", "-t", "app:1", str(ctx)))
    assert len(steps(r.out)) == 7, r.out
    assert "STEP 4/7: RUN chmod +x app.sh" in r.out
    assert "Successfully tagged app:1" in r.out or "Successfully tagged localhost/app:1" in r.out, r.out
    assert image_id(r.out).startswith("sha256:")
    run_ = ok(rb("run", "--rm", "app:1"))
    assert "Hello World from" in run_.out, run_
    assert "greeting: hi there" in run_.out
    # The files landed in /app, the RUN's file too, the Dockerfile did not.
    ls = ok(rb("run", "--rm", "app:1", "ls", "/app"))
    assert sorted(ls.out.split()) == ["app.sh", "greeting.txt", "installed"], ls
    # Recorded config: WORKDIR, ENV, EXPOSE (with the base's port), CMD, the base's labels.
    cfg = ok(rb("run", "--rm", "app:1", "sh", "-c", "pwd; echo $NAME"))
    assert cfg.out.split() == ["/app", "World"]
    text = ok(rb("image", "inspect", "app:1")).out
    assert '"80/tcp"' in text and '"8080/tcp"' in text
    assert '"/app/app.sh"' in text


def test_history_lists_the_steps(rb, tmp_path):
    ctx = app_context(tmp_path)
    ok(rb("build", "-t", "app:h", str(ctx)))
    h = ok(rb("history", "--no-trunc", "app:h"))
    lines = h.out.splitlines()[1:]
    # Newest first: CMD, ENV, EXPOSE, RUN, ADD, WORKDIR, then the base's 3 layers.
    assert "CMD [\"/app/app.sh\"]" in lines[0], h.out
    assert "ENV NAME=World" in lines[1]
    assert "EXPOSE 80/tcp" in lines[2]
    assert "RUN /bin/sh -c chmod +x app.sh" in lines[3]
    assert "ADD . /app" in lines[4]
    assert "WORKDIR /app" in lines[5]
    assert "busybox base" in lines[-1]
    # Metadata-only steps have no layer: 3 base layers + ADD + RUN.
    man = json.loads(ok(rb("image", "inspect", "app:h")).out)
    man = man[0] if isinstance(man, list) else man
    assert len(man["RootFS"]["Layers"]) == 5, man["RootFS"]


def test_rebuild_is_cached_and_a_changed_file_rebuilds_from_its_step(rb, tmp_path):
    ctx = app_context(tmp_path)
    first = ok(rb("build", "-t", "app:c", str(ctx)))
    t0 = time.monotonic()
    again = ok(rb("build", "-t", "app:c", str(ctx)))
    took = time.monotonic() - t0
    assert again.out.count("--> CACHED") == 6, again.out  # every step but FROM
    assert image_id(again.out) == image_id(first.out)
    assert took < 3, f"a fully cached build took {took:.2f}s"
    # One copied file changes: WORKDIR stays cached, ADD and everything after run again.
    (ctx / "greeting.txt").write_text("changed\n")
    third = ok(rb("build", "-t", "app:c", str(ctx)))
    assert third.out.count("--> CACHED") == 1, third.out
    assert image_id(third.out) != image_id(first.out)
    assert "greeting: changed" in ok(rb("run", "--rm", "app:c")).out
    # --no-cache runs everything.
    nc = ok(rb("build", "--no-cache", "-t", "app:c", str(ctx)))
    assert "CACHED" not in nc.out


def test_dockerignore(rb, tmp_path):
    ctx = app_context(tmp_path, "FROM test/busybox:1\nCOPY . /app/\nCMD [\"ls\", \"-a\", \"/app\"]\n")
    (ctx / "secret.key").write_text("no\n")
    (ctx / "logs").mkdir()
    (ctx / "logs" / "a.log").write_text("x\n")
    (ctx / "logs" / "keep.log").write_text("y\n")
    (ctx / ".dockerignore").write_text("# not these\n*.key\nlogs\n!logs/keep.log\n")
    ok(rb("build", "-t", "ign", str(ctx)))
    out = ok(rb("run", "--rm", "ign")).out.split()
    assert "secret.key" not in out and "Dockerfile" not in out and ".dockerignore" not in out
    assert "app.sh" in out and "logs" in out
    logs = ok(rb("run", "--rm", "ign", "ls", "/app/logs")).out.split()
    assert logs == ["keep.log"]
    # Naming an excluded file is an error that says so.
    (ctx / "Dockerfile").write_text("FROM test/busybox:1\nCOPY secret.key /\n")
    r = rb("build", str(ctx))
    assert r.rc != 0 and "secret.key" in r.err and "dockerignore" in r.err, r


def test_multi_stage_copies_only_the_artifact(rb, tmp_path):
    df = """ARG GREETING=hello
FROM test/busybox:1 AS build
ARG GREETING
WORKDIR /src
COPY greeting.txt .
RUN mkdir -p /out && echo "$GREETING $(cat greeting.txt)" > /out/artifact && \\
    dd if=/dev/zero of=/src/big bs=1024 count=512 2>/dev/null

FROM scratch
COPY --from=build /out/artifact /artifact
COPY --from=build /bin/busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/artifact"]
"""
    ctx = app_context(tmp_path, df)
    r = ok(rb("build", "--build-arg", "GREETING=howdy", "-t", "ms", str(ctx)))
    assert len(steps(r.out)) == 10, r.out
    assert ok(rb("run", "--rm", "ms")).out.strip() == "howdy hi there"
    ls = ok(rb("run", "--rm", "ms", "find", "/", "-xdev", "-type", "f"))
    files = sorted(f for f in ls.out.split() if not f.startswith(("/proc", "/sys", "/dev", "/etc")))
    assert files == ["/artifact", "/bin/busybox"], ls
    # --target stops at a stage.
    t = ok(rb("build", "--target", "build", "-t", "ms-build", str(ctx)))
    assert len(steps(t.out)) == 5
    assert "big" in ok(rb("run", "--rm", "ms-build", "ls", "/src")).out


def test_failing_run_fails_the_build_and_keeps_the_tag(rb, tmp_path):
    ctx = app_context(tmp_path, "FROM test/busybox:1\nRUN echo good > /f\n")
    good = ok(rb("build", "-t", "keep:1", str(ctx)))
    (ctx / "Dockerfile").write_text("FROM test/busybox:1\nRUN echo before\nRUN echo to-the-log; echo oops >&2; exit 3\nRUN echo never\n")
    r = rb("build", "-t", "keep:1", str(ctx))
    assert r.rc != 0, r
    assert "to-the-log" in r.out and "oops" in r.out, r
    assert "line 3" in r.err and "non-zero code: 3" in r.err, r
    assert "never" not in r.out
    assert ok(rb("run", "--rm", "keep:1", "cat", "/f")).out.strip() == "good"
    assert image_id(good.out).split(":")[1][:12] in ok(rb("images")).out
    # No container is left behind.
    assert ok(rb("ps", "-aq")).out.strip() == ""


def test_ctrl_c_cancels_the_build(rb, bins, tmp_path):
    """SIGINT (Ctrl-C) while a RUN step runs: the step's container is killed and removed, the
    build says it was cancelled and exits 130 within seconds, and nothing is tagged."""
    ctx = app_context(tmp_path, "FROM test/busybox:1\nRUN echo step started; sleep 60\nRUN touch /never\n")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([str(bins.rootbox), "build", "-t", "cancelled:1", str(ctx)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=_base_env(rb.env, ()), start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and b"step started" not in (out.seek(0) or out.read()):
                assert p.poll() is None, "the build ended before its RUN step started"
                time.sleep(0.05)
            t = time.monotonic()
            p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=30)
            took = time.monotonic() - t
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        err.seek(0)
        msg = err.read().decode()
    assert rc == 130 and "the build was cancelled" in msg, (rc, msg)
    assert took < 15, f"the build went on for {took:.0f}s after SIGINT"
    assert ok(rb("ps", "-aq")).out.strip() == ""
    assert rb("image", "inspect", "cancelled:1").rc != 0


@pytest.mark.parametrize(
    "dockerfile,want",
    [
        ("FROM test/busybox:1\nRUN true\nFROBNICATE x\n", "line 3: unknown instruction: FROBNICATE"),
        ("RUN true\n", "line 1: RUN before the first FROM"),
        ("FROM test/busybox:1\n\nCOPY only-one\n", "line 3: COPY requires at least two arguments"),
        ("FROM no/such:image\n", "no such image"),
        ("FROM test/busybox:1\nCOPY missing.txt /\n", "missing.txt"),
        ("FROM test/busybox:1\nEXPOSE eighty\n", "line 2: EXPOSE: invalid port"),
    ],
)
def test_bad_dockerfiles_name_the_problem(rb, tmp_path, dockerfile, want):
    ctx = app_context(tmp_path, dockerfile)
    r = rb("build", str(ctx))
    assert r.rc != 0 and want in r.err, r


def test_instructions_recorded(rb, tmp_path):
    df = """# escape=`
FROM test/busybox:1
ARG VER=1.0
LABEL version=$VER description="a test image"
ENV A=1 B="two words" `
    C=${VER}-c
USER app
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD true
VOLUME /data
ENTRYPOINT ["/bin/sh", "-c"]
"""
    ctx = app_context(tmp_path, df)
    ok(rb("build", "--label", "extra=yes", "-t", "meta", str(ctx)))
    text = ok(rb("image", "inspect", "meta")).out
    data = json.loads(text)
    data = data[0] if isinstance(data, list) else data
    c = data["Config"]
    assert c["Labels"]["version"] == "1.0" and c["Labels"]["description"] == "a test image"
    assert c["Labels"]["extra"] == "yes"
    assert "B=two words" in c["Env"] and "C=1.0-c" in c["Env"]
    assert c["User"] == "app" and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and c["Healthcheck"]["Retries"] == 2
    assert "/data" in c["Volumes"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    assert not c.get("Cmd"), "ENTRYPOINT resets the base image's CMD"



def test_run_step_keeps_the_image_config(rb, tmp_path):
    # A RUN step's layer is committed without the step's command or build args becoming the
    # image's (unlike `rootbox commit`, which records the container's own config).
    ctx = app_context(tmp_path, """FROM test/busybox:1
ARG TOKEN=abc
CMD ["cat", "/ran"]
RUN echo ran > /ran
""")
    ok(rb("build", "-t", "keeps", str(ctx)))
    data = json.loads(ok(rb("image", "inspect", "keeps")).out)
    c = (data[0] if isinstance(data, list) else data)["Config"]
    assert c["Cmd"] == ["cat", "/ran"] and not c.get("Entrypoint"), c
    assert not any(e.startswith("TOKEN=") for e in c.get("Env") or []), c
    assert ok(rb("run", "--rm", "keeps")).out == "ran\n"

def test_copy_chown_chmod_and_add_extracts_tarballs(rb, tmp_path):
    ctx = app_context(tmp_path, """FROM test/busybox:1
COPY --chown=app:app --chmod=640 greeting.txt /home/app/
ADD bundle.tar.gz /opt/bundle/
ADD plain.txt /opt/
COPY *.sh /bin/
""")
    (ctx / "plain.txt").write_text("plain\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"inside the tarball\n"
        ti = tarfile.TarInfo("sub/inner.txt")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    (ctx / "bundle.tar.gz").write_bytes(buf.getvalue())
    ok(rb("build", "-t", "cp", str(ctx)))
    out = ok(rb("run", "--rm", "cp", "sh", "-c",
                "cat /opt/bundle/sub/inner.txt /opt/plain.txt; ls /bin/app.sh; stat -c '%a' /home/app/greeting.txt; stat -c '%a' /tmp")).out
    assert out.split("\n")[:5] == ["inside the tarball", "plain", "/bin/app.sh", "640", "1777"], out
    # The layer records the owner as the container sees it (app = 1000), whatever the mapping.
    idx = json.loads((rb.store / "index.json").read_text())
    dig = next(m["digest"] for m in idx["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").endswith("/cp:latest"))
    blob = lambda d: (rb.store / "blobs" / "sha256" / d.split(":")[1]).read_bytes()
    man = json.loads(blob(dig))
    layer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(man["layers"][3]["digest"]))))
    m = layer.getmember("home/app/greeting.txt")
    assert (m.uid, m.gid, m.mode) == (1000, 1000, 0o640)
    # The existing parent keeps its metadata in the layer (home/app is 0750 app:app).
    p = layer.getmember("home/app")
    assert (p.uid, p.mode) == (0, 0o750) or (p.uid, p.mode) == (1000, 0o750)


def test_chown_in_run_with_a_single_id(rb, tmp_path):
    """With a single-id mapping only uid 0 exists: RUN chown to another id fails with a note
    saying why; with subordinate ids it works."""
    ctx = app_context(tmp_path, "FROM test/busybox:1\nRUN touch /x && chown 1000:1000 /x && stat -c %u /x\n")
    if os.geteuid() != 0:
        r = rb("build", "--idmap", "single", str(ctx))
        assert r.rc != 0, r
        assert "single-id mapping" in r.out, r
        if subids_missing_reason():
            pytest.skip(subids_missing_reason())
    r = ok(rb("build", "--idmap", "auto" if os.geteuid() == 0 else "subids", str(ctx)))
    assert "\n1000\n" in r.out
