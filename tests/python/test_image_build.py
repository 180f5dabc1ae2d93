"""images.build: a Dockerfile (FROM the test image, ARG, RUN, COPY, CMD) built into an image
that then runs; failing steps raise BuildError with the log."""

from __future__ import annotations

import io
import signal
import tarfile
import threading
import time

import pytest

import rootbox
from conftest import IMAGE

DOCKERFILE = f"""\
FROM {IMAGE}
ARG GREETING=hi
RUN echo "$GREETING from RUN" > /made-by-run.txt
COPY hello.txt /opt/hello.txt
CMD ["sh", "-c", "cat /made-by-run.txt /opt/hello.txt"]
"""


def test_build_then_run(own_store_client, tmp_path):
    c = own_store_client
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("copied from the context\n")
    img, logs = c.images.build(path=str(ctx), tag="py/built:1", buildargs={"GREETING": "hello"}, labels={"made-by": "pytest"})
    assert isinstance(img, rootbox.Image) and "py/built:1" in img.tags
    assert img.labels == {"made-by": "pytest"}
    log = list(logs)
    assert log and all(set(e) == {"stream"} for e in log)
    text = "".join(e["stream"] for e in log)
    assert "STEP 3/5: RUN" in text and img.short_id[7:] in text
    assert c.containers.run("py/built:1", remove=True) == b"hello from RUN\ncopied from the context\n"
    # Unchanged inputs: every step from the cache, the same image.
    again, logs2 = c.images.build(path=ctx, tag="py/built:1", buildargs={"GREETING": "hello"}, labels={"made-by": "pytest"})
    assert again.id == img.id
    assert "CACHED" in "".join(e["stream"] for e in logs2)


def test_build_from_fileobj_and_custom_context(own_store_client):
    c = own_store_client
    img, _ = c.images.build(fileobj=io.BytesIO(f"FROM {IMAGE}\nENV FROM_FILEOBJ=yes\n".encode()), tag="py/fileobj:1")
    assert c.containers.run(img, ["sh", "-c", "echo $FROM_FILEOBJ"], remove=True) == b"yes\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in (("build/Containerfile", f"FROM {IMAGE}\nCOPY data.txt /data.txt\n".encode()),
                           ("data.txt", b"from a tar context\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    img2, _ = c.images.build(fileobj=buf, custom_context=True, dockerfile="build/Containerfile", quiet=True)
    assert c.containers.run(img2, "cat /data.txt", remove=True) == b"from a tar context\n"


def test_failing_step_raises_build_error(own_store_client, tmp_path):
    c = own_store_client
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo about to fail >&2; exit 3\n")
    with pytest.raises(rootbox.BuildError) as ei:
        c.images.build(path=ctx, tag="py/broken:1")
    e = ei.value
    assert "line 2" in e.msg and "non-zero code: 3" in e.msg
    log = list(e.build_log)
    assert any("about to fail" in x.get("stream", "") for x in log)
    assert log[-1] == {"errorDetail": {"message": e.msg}, "error": e.msg}
    with pytest.raises(rootbox.ImageNotFound):
        c.images.get("py/broken:1")


def test_build_bad_inputs(own_store_client, tmp_path):
    c = own_store_client
    with pytest.raises(ValueError, match="/no/such/context"):
        c.images.build(path="/no/such/context")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with pytest.raises(ValueError, match="Dockerfile"):
        c.images.build(path=ctx)
    (ctx / "Dockerfile").write_text("FROM test/not-there:1\n")
    with pytest.raises(rootbox.BuildError, match="test/not-there:1"):
        c.images.build(path=ctx)
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nNOSUCHINSTRUCTION x\n")
    with pytest.raises(rootbox.BuildError, match="line 2"):
        c.images.build(path=ctx)
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\n")
    with pytest.raises(ValueError, match="Bad:Tag:"):
        c.images.build(path=ctx, tag="Bad:Tag:")
    with pytest.raises(ValueError, match="squash"):
        c.images.build(path=ctx, squash=True)


def test_ctrl_c_cancels_the_build(own_store_client, tmp_path):
    """Ctrl-C while a RUN step runs: the step's container is killed and removed, nothing is
    tagged, and KeyboardInterrupt comes within seconds (not after the step's 60 s)."""
    c = own_store_client
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo step started; sleep 60\nRUN touch /never\n")
    main = threading.main_thread().ident
    seen = []

    def interrupt_once_the_step_runs():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [ct for ct in c.containers.list() if ct.status == "running"]
            if running:
                seen.extend(ct.id for ct in running)
                break
            time.sleep(0.05)
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt_once_the_step_runs, daemon=True).start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        c.images.build(path=str(ctx), tag="py/cancelled:1")
    took = time.monotonic() - t
    assert seen, "the RUN step's container was never seen running"
    assert took < 30, f"the build went on for {took:.0f}s after Ctrl-C"
    assert c.containers.list(all=True) == []
    with pytest.raises(rootbox.ImageNotFound):
        c.images.get("py/cancelled:1")
