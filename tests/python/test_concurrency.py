"""Threads, fork and Ctrl-C: the module in a real multithreaded interpreter."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import rootbox
from conftest import IMAGE


def test_16_threads_x_5_containers_no_deadlock(client):
    """Launching from 16 threads at once while 4 more allocate never deadlocks (the core's
    fork-safety rule: nothing between clone and exec takes a lock)."""
    stop = threading.Event()

    def allocate():
        while not stop.is_set():
            junk = [bytearray(4096) for _ in range(256)]
            junk.append(str(len(junk)) * 100)

    results = {}
    errors = []

    def worker(n):
        try:
            for i in range(5):
                out = client.containers.run(IMAGE, ["echo", f"t{n}c{i}"], remove=True)
                results[(n, i)] = out
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((n, repr(e)))

    allocators = [threading.Thread(target=allocate, daemon=True) for _ in range(4)]
    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(16)]
    t0 = time.monotonic()
    for t in allocators + workers:
        t.start()
    deadline = t0 + 180
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    hung = [t.name for t in workers if t.is_alive()]
    elapsed = time.monotonic() - t0
    assert not hung, f"threads still running after {elapsed:.0f}s (deadlock?): {hung}"
    assert errors == []
    assert len(results) == 80
    assert all(results[(n, i)] == f"t{n}c{i}\n".encode() for n in range(16) for i in range(5))
    print(f"80 containers from 16 threads in {elapsed:.1f}s")
    assert client.containers.list(all=True) == []


def test_works_after_fork(client):
    # A thread of the parent's is alive during the fork, as in any real program.
    busy = threading.Event()
    t = threading.Thread(target=busy.wait, daemon=True)
    t.start()
    assert client.containers.run(IMAGE, "echo parent", remove=True) == b"parent\n"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            out = client.containers.run(IMAGE, "echo child", remove=True)
            c = client.containers.run(IMAGE, "sh -c 'exit 6'", detach=True)
            w = c.wait(timeout=30)["StatusCode"]
            c.remove()
            code = 0 if (out == b"child\n" and w == 6) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    busy.set()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert client.containers.run(IMAGE, "echo again", remove=True) == b"again\n"


def _interrupt_after(seconds):
    main = threading.main_thread().ident

    def fire():
        time.sleep(seconds)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()


def test_ctrl_c_during_wait(client):
    c = client.containers.run(IMAGE, "sleep 60", detach=True)
    _interrupt_after(0.5)
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        c.wait()
    assert time.monotonic() - t < 5
    # Waiting stopped; the container is untouched and still usable.
    c.reload()
    assert c.status == "running"
    c.kill()
    assert c.wait(timeout=30)["StatusCode"] == 137


def test_ctrl_c_during_run_kills_the_container(client):
    _interrupt_after(0.7)
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.containers.run(IMAGE, "sleep 60", name="interrupted", remove=True)
    assert time.monotonic() - t < 10
    # killed and removed: nothing left running
    deadline = time.monotonic() + 10
    while client.containers.list(all=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.containers.list(all=True) == []


def test_ctrl_c_during_exec(client):
    c = client.containers.run(IMAGE, "sleep 60", detach=True)
    _interrupt_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        c.exec_run("sleep 30")
    c.remove(force=True)


def test_gil_released_while_waiting(client):
    """Another Python thread keeps running while the main thread waits on a container."""
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    th = threading.Thread(target=tick)
    th.start()
    client.containers.run(IMAGE, "sleep 1", remove=True)
    stop.set()
    th.join()
    assert len(ticks) > 30
