#!/usr/bin/env python3
"""rootbox from Python: import an image, run containers in the foreground and in the
background, exec into one, read its logs, build an image from a Dockerfile, copy files in
and out of a container. No daemon, no root.

    pip install .                       # from the repository's top directory
    python3 examples/python/quickstart.py ROOTFS.tar

ROOTFS.tar: any root filesystem tarball with a shell, e.g. made with
    tests/lib/mk-busybox-rootfs.sh /tmp/bb && tar -C /tmp/bb -cf /tmp/bb.tar .
"""

import io
import sys
import tarfile
import tempfile

import rootbox


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="rootbox-example-")
    client = rootbox.Client(root=f"{work}/store", state_dir=f"{work}/state")

    image = client.images.import_(sys.argv[1], "example/busybox", "1")
    print("imported", image.tags, image.short_id)

    # Foreground: the output comes back as bytes.
    print(client.containers.run("example/busybox:1", "echo hello from a container", remove=True))

    # A non-zero exit raises ContainerError with the exit status and stderr.
    try:
        client.containers.run("example/busybox:1", ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
    except rootbox.ContainerError as e:
        print("failed with", e.exit_status, e.stderr)

    # Background: a Container; exec into it, read its logs, wait for it.
    c = client.containers.run(
        "example/busybox:1",
        ["sh", "-c", "echo started; sleep 1; echo finished"],
        detach=True,
        environment={"MODE": "demo"},
    )
    print(c.name, c.status)
    code, out = c.exec_run(["sh", "-c", "echo MODE=$MODE"])
    print("exec:", code, out)
    print("exit:", c.wait()["StatusCode"])
    print("logs:", c.logs())
    c.remove()

    # Build: one layer per RUN/COPY/ADD (RUN steps are rootless containers too), cached.
    dockerfile = b"FROM example/busybox:1\nRUN echo built by a RUN step > /built.txt\nCMD [\"cat\", \"/built.txt\"]\n"
    built, logs = client.images.build(fileobj=io.BytesIO(dockerfile), tag="example/built:1")
    for entry in logs:
        print("build:", entry["stream"], end="")
    print(client.containers.run(built, remove=True))

    # Files in and out of a container, as tar archives (docker cp).
    c = client.containers.run("example/built:1", "sleep 10", detach=True)
    chunks, stat = c.get_archive("/built.txt")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as t:
        print("get_archive:", stat["name"], oct(stat["mode"] & 0o777), t.extractfile("built.txt").read())
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:
        info = tarfile.TarInfo("note.txt")
        info.size = 6
        t.addfile(info, io.BytesIO(b"hello\n"))
    c.put_archive("/tmp", data.getvalue())
    print("put_archive:", c.exec_run("cat /tmp/note.txt").output)
    c.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
