"""Containers: ``client.containers`` and ``Container`` (the Docker SDK's shape)."""

from __future__ import annotations

import json
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _convert
from ._rootbox import Chunks, Exec, LogFollower
from .errors import ContainerError, ContainerNotFound, InvalidArgument, NotFound, RuntimeFailure

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client
    from .images import Image

__all__ = ["Container", "ContainerCollection", "ExecResult", "ExecStream", "LogStream"]

DEFAULT_DATA_CHUNK_SIZE = 2 * 1024 * 1024
"""docker-py's chunk size for archives and exports."""


def _chunks(c: Chunks) -> Iterator[bytes]:
    try:
        while True:
            b = c.next()
            if b is None:
                return
            yield b
    finally:
        c.close()


def _timestamp(t: Union[int, float, str, None], what: str) -> Optional[float]:
    """Seconds since the epoch from an int/float, a datetime, or None."""
    if t is None:
        return None
    if isinstance(t, bool):
        raise TypeError(f"{what} must be a number of seconds or a datetime")
    if isinstance(t, (int, float)):
        return float(t)
    ts = getattr(t, "timestamp", None)
    if callable(ts):
        return float(ts())
    raise TypeError(f"{what} must be a number of seconds or a datetime")


class LogStream:
    """Log data as it is written (``logs(stream=True)``): iterate for ``bytes`` chunks."""

    def __init__(self, follower: LogFollower, stdout: bool, stderr: bool, timestamps: bool) -> None:
        self._f = follower
        self._want = {"stdout": stdout, "stderr": stderr}
        self._ts = timestamps

    def __iter__(self) -> "LogStream":
        return self

    def __next__(self) -> bytes:
        while True:
            item = self._f.next()
            if item is None:
                raise StopIteration
            stream, t, data = item
            if self._want.get(stream, False):
                return (t.encode() + b" " + data) if self._ts else data

    def close(self) -> None:
        """Stops following."""
        self._f.close()


class ExecStream:
    """The output of ``exec_run(stream=True)``: iterate for ``bytes`` chunks (or
    ``(stdout, stderr)`` pairs with ``demux=True``); ``exit_code`` is set once the output has
    ended (``wait()`` waits for it)."""

    def __init__(self, proc: Exec, demux: bool) -> None:
        self._p = proc
        self._demux = demux
        self.exit_code: Optional[int] = None

    def __iter__(self) -> "ExecStream":
        return self

    def __next__(self) -> Any:
        item = self._p.read()
        if item is None:
            self.wait()
            raise StopIteration
        stream, data = item
        if self._demux:
            return (data, None) if stream == 1 else (None, data)
        return data

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits for the process to end; its exit code."""
        self.exit_code = self._p.wait(timeout)
        return self.exit_code


class ExecResult(NamedTuple):
    """``(exit_code, output)`` of ``exec_run``."""

    exit_code: Optional[int]
    output: Any


class Container:
    """A container. ``attrs`` holds Docker's inspect JSON as of the last ``reload()``."""

    def __init__(self, attrs: Dict[str, Any], client: "Client") -> None:
        self.attrs: Dict[str, Any] = attrs
        self.client = client

    def __repr__(self) -> str:
        return f"<Container: {self.short_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Container) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> str:
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        return str(self.attrs.get("Name", "")).lstrip("/")

    @property
    def status(self) -> str:
        """created, running, paused or exited (as of the last ``reload()``)."""
        return str(self.attrs.get("State", {}).get("Status", ""))

    @property
    def labels(self) -> Dict[str, str]:
        return dict(self.attrs.get("Config", {}).get("Labels") or {})

    @property
    def image(self) -> Optional["Image"]:
        """The image it was made from (None for a plain root filesystem or a removed image)."""
        ref = self.attrs.get("Image") or ""
        if not ref:
            return None
        try:
            return self.client.images.get(ref)
        except NotFound:
            return None

    @property
    def ports(self) -> Dict[str, Any]:
        return dict(self.attrs.get("NetworkSettings", {}).get("Ports") or {})

    def reload(self) -> None:
        """Reads the container's state again."""
        self.attrs = json.loads(self.client._rt.inspect(self.id))

    def start(self) -> None:
        self.client._rt.start(self.id)
        self.reload()

    def stop(self, timeout: Optional[int] = None) -> None:
        """The stop signal, then SIGKILL after ``timeout`` seconds (default: its stop timeout)."""
        self.client._rt.stop(self.id, timeout)
        self._reload_if_present()

    def restart(self, timeout: Optional[int] = None) -> None:
        self.client._rt.restart(self.id, timeout)
        self.reload()

    def kill(self, signal: Union[str, int, None] = None) -> None:
        """Sends ``signal`` (default SIGKILL) to the container's first process."""
        sig = "SIGKILL" if signal is None else str(signal)
        self.client._rt.kill(self.id, sig)

    def pause(self) -> None:
        self.client._rt.pause(self.id)

    def unpause(self) -> None:
        self.client._rt.unpause(self.id)

    def remove(self, force: bool = False, v: bool = False) -> None:
        """Removes the container (a running one only with ``force``)."""
        self.client._rt.remove(self.id, force)

    def rename(self, name: str) -> None:
        self.client._rt.rename(self.id, name)
        self.reload()

    def wait(self, timeout: Optional[float] = None, condition: Optional[str] = None) -> Dict[str, Any]:
        """Waits for the container to exit: ``{"StatusCode": code, "Error": None}``.
        Raises ``TimeoutError`` after ``timeout`` seconds; Ctrl-C stops waiting."""
        if condition not in (None, "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid wait condition {condition!r}")
        code = self.client._rt.wait(self.id, timeout)
        self._reload_if_present()
        return {"StatusCode": code, "Error": None}

    def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        stream: bool = False,
        timestamps: bool = False,
        tail: Union[str, int] = "all",
        since: Any = None,
        follow: Optional[bool] = None,
        until: Any = None,
    ) -> Any:
        """The container's output (detached containers: what its monitor logged).
        ``stream=True``: an iterator of chunks, following until the container stops
        (unless ``follow=False``)."""
        if tail == "all":
            n: Optional[int] = None
        elif isinstance(tail, int) and not isinstance(tail, bool) and tail >= 0:
            n = tail
        else:
            raise InvalidArgument(f"invalid tail {tail!r}: use 'all' or a number >= 0")
        s, u = _timestamp(since, "since"), _timestamp(until, "until")
        if follow is None:
            follow = stream
        if stream and follow:
            return LogStream(self.client._rt.follow_logs(self.id, n, s, u), stdout, stderr, timestamps)
        want = {"stdout": stdout, "stderr": stderr}
        chunks = [
            (t.encode() + b" " + d) if timestamps else d
            for (st, t, d) in self.client._rt.logs(self.id, n, s, u)
            if want.get(st, False)
        ]
        if stream:
            return iter(chunks)
        return b"".join(chunks)

    def exec_run(
        self,
        cmd: Union[str, Sequence[str]],
        stdout: bool = True,
        stderr: bool = True,
        stdin: bool = False,
        tty: bool = False,
        privileged: bool = False,
        user: str = "",
        detach: bool = False,
        stream: bool = False,
        socket: bool = False,
        environment: Union[Dict[str, Any], List[str], None] = None,
        workdir: Optional[str] = None,
        demux: bool = False,
    ) -> ExecResult:
        """Runs ``cmd`` in the running container: ``ExecResult(exit_code, output)``.
        With ``stream=True`` the output is an ``ExecStream`` whose ``exit_code`` is set once
        it has been read to its end; with ``demux=True`` output is ``(stdout, stderr)``."""
        if stdin or tty or socket:
            raise InvalidArgument("exec_run: stdin, tty and socket are not supported; use stream=True")
        if privileged:
            raise InvalidArgument("exec_run: privileged is not supported by a rootless runtime")
        command = _convert.command_list(cmd)
        if not command:
            raise InvalidArgument("exec_run needs a command")
        env = _convert.env_list(environment)
        proc = self.client._rt.exec(
            self.id, command, env, workdir, user or None, stdout, stderr, demux, detach
        )
        if detach:
            return ExecResult(None, b"")
        if stream:
            return ExecResult(None, ExecStream(proc, demux))
        parts: Dict[int, List[bytes]] = {1: [], 2: []}
        while True:
            item = proc.read()
            if item is None:
                break
            parts[item[0]].append(item[1])
        code = proc.wait()
        if demux:
            out = b"".join(parts[1]) if stdout else None
            err = b"".join(parts[2]) if stderr else None
            return ExecResult(code, (out, err))
        return ExecResult(code, b"".join(parts[1]))

    def stats(self, stream: bool = False, decode: Optional[bool] = None) -> Any:
        """Usage from the container's cgroup, in the Docker SDK's keys (``memory_stats``,
        ``cpu_stats``, ``pids_stats``), plus the core's figures under ``rootbox``. Raises
        ``ResourceLimitUnavailable`` when the container has no cgroup (no delegation)."""
        if stream:
            return self._stats_stream()
        return self._stats_once()

    def _stats_once(self) -> Dict[str, Any]:
        s = json.loads(self.client._rt.stats(self.id))
        return {
            "id": self.id,
            "name": "/" + self.name,
            "read": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "memory_stats": {
                "usage": s["memory_current"],
                "max_usage": s["memory_peak"],
                "limit": s["memory_limit"],
                "failcnt": s["memory_max_events"],
                "stats": s.get("memory_stat", {}),
            },
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": s["cpu_usage_usec"] * 1000,
                    "usage_in_usermode": s["cpu_user_usec"] * 1000,
                    "usage_in_kernelmode": s["cpu_system_usec"] * 1000,
                },
                "throttling_data": {
                    "periods": s["cpu_periods"],
                    "throttled_periods": s["cpu_throttled_periods"],
                    "throttled_time": s["cpu_throttled_usec"] * 1000,
                },
                "cpu_quota": s["cpu_quota"],
                "cpu_period": s["cpu_period"],
            },
            "pids_stats": {"current": s["pids_current"], "limit": s["pids_limit"]},
            "rootbox": s,
        }

    def _stats_stream(self) -> Iterator[Dict[str, Any]]:
        while True:
            yield self._stats_once()
            time.sleep(1.0)

    def top(self) -> Dict[str, Any]:
        rows = json.loads(self.client._rt.top(self.id))
        return {
            "Titles": ["UID", "PID", "PPID", "TIME", "CMD"],
            "Processes": [[str(r["uid"]), str(r["pid"]), str(r["ppid"]), r["time"], r["cmd"]] for r in rows],
        }

    def commit(
        self,
        repository: Optional[str] = None,
        tag: Optional[str] = None,
        message: Optional[str] = None,
        author: Optional[str] = None,
        pause: bool = True,
        changes: Union[str, Sequence[str], None] = None,
        conf: Optional[Dict[str, Any]] = None,
    ) -> "Image":
        """The container's changes as a new image, named ``repository[:tag]`` when given.
        ``changes``: Dockerfile-like lines (CMD, ENV, ...). The container is frozen meanwhile
        when it has a freezer (``pause``)."""
        if conf:
            raise InvalidArgument("commit: conf is not supported; use changes=['CMD ...', 'ENV K=V']")
        if tag and not repository:
            raise InvalidArgument("a tag needs a repository")
        ref = f"{repository}:{tag}" if repository and tag else repository
        lines = [changes] if isinstance(changes, str) else list(changes or [])
        iid = self.client._rt.commit(self.id, ref, message, author, lines, pause)
        return self.client.images.get(iid)

    def diff(self) -> List[Dict[str, Any]]:
        """Changes of the writable layer: ``[{"Path": "/x", "Kind": 1}]`` (0 changed, 1 added,
        2 deleted)."""
        return [{"Path": p, "Kind": k} for p, k in self.client._rt.diff(self.id)]

    def export(self, chunk_size: int = 2 * 1024 * 1024) -> Iterator[bytes]:
        """The container's file tree as a tar stream, in chunks."""
        import os
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="rootbox-export-")
        try:
            out = os.path.join(d, "export.tar")
            self.client._rt.export(self.id, out)
            with open(out, "rb") as f:
                while True:
                    b = f.read(chunk_size)
                    if not b:
                        break
                    yield b
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def get_archive(
        self,
        path: str,
        chunk_size: Optional[int] = DEFAULT_DATA_CHUNK_SIZE,
        encode_stream: bool = False,
    ) -> Tuple[Iterator[bytes], Dict[str, Any]]:
        """A tar of ``path`` in the container (a file, or a directory with what is below it;
        ``path/.``: only what is below it), as ``docker cp`` makes it: ``(chunks, stat)``, where
        ``stat`` is Docker's path stat: ``name``, ``size``, ``mode`` (Go's ``os.FileMode``:
        permission bits, plus ``1 << 31`` for a directory, ``1 << 27`` for a symlink),
        ``mtime`` (RFC 3339) and ``linkTarget``. Works on running and stopped containers
        (a running one's volumes included). Raises ``NotFound`` when there is no such path.
        ``encode_stream`` concerns a daemon connection and changes nothing here."""
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"invalid container path {path!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise InvalidArgument(f"invalid chunk_size {chunk_size!r}: a number of bytes >= 1")
        st, chunks = self.client._rt.get_archive(self.id, path, chunk_size or DEFAULT_DATA_CHUNK_SIZE)
        name, size, mode, mtime, mtime_ns, link = st
        stat = {
            "name": name,
            "size": size,
            "mode": _convert.go_file_mode(mode),
            "mtime": _convert.rfc3339(mtime, mtime_ns),
            "linkTarget": link,
        }
        return _chunks(chunks), stat

    def put_archive(self, path: str, data: Any) -> bool:
        """Extracts the tar ``data`` (bytes, a binary file or an iterable of bytes; plain or
        gzip/bzip2/xz compressed) into the directory ``path`` of the container: into its
        writable layer, or while it runs through its root (so into volumes too). Returns True.
        Raises ``NotFound`` when ``path`` does not exist, ``InvalidArgument`` when it is not a
        directory or an entry would leave it."""
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"invalid container path {path!r}")
        raw = _convert.decompress(_convert.read_data(data), "put_archive data")
        self.client._rt.put_archive(self.id, path, raw)
        return True

    def _reload_if_present(self) -> None:
        try:
            self.reload()
        except ContainerNotFound:
            # Removed by its monitor (auto_remove): keep the last state seen.
            pass


class ContainerCollection:
    """``client.containers``."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def get(self, container_id: str) -> Container:
        """A container by id, name or unique id prefix (``ContainerNotFound`` otherwise)."""
        if not isinstance(container_id, str) or not container_id:
            raise InvalidArgument(f"invalid container reference {container_id!r}")
        return Container(json.loads(self.client._rt.inspect(container_id)), self.client)

    def list(
        self,
        all: bool = False,
        filters: Optional[Dict[str, Union[str, List[str]]]] = None,
        limit: int = -1,
    ) -> List[Container]:
        """Running containers (all with ``all=True``), newest first. ``filters``: ``status``,
        ``name``, ``id`` (each a value or a list)."""
        flat: List[str] = []
        for k, v in (filters or {}).items():
            for x in v if isinstance(v, list) else [v]:
                flat.append(f"{k}={x}")
        out = []
        for cid in self.client._rt.list(all, flat):
            try:
                out.append(self.get(cid))
            except ContainerNotFound:
                continue  # removed meanwhile
            if 0 <= limit <= len(out):
                break
        return out

    def create(self, image: Any, command: _convert.Command = None, **kwargs: Any) -> Container:
        """Creates a container (set up, not started): ``Container.start()`` runs it."""
        kwargs.pop("detach", None)
        req = _convert.request(image, command, **kwargs)
        cid = self.client._rt.create(req)
        return self.get(cid)

    def run(
        self,
        image: Any,
        command: _convert.Command = None,
        *,
        detach: bool = False,
        remove: bool = False,
        environment: Union[Dict[str, Any], List[str], None] = None,
        volumes: Union[Dict[str, Any], List[str], None] = None,
        working_dir: Optional[str] = None,
        user: Optional[str] = None,
        name: Optional[str] = None,
        mem_limit: Union[int, str, None] = None,
        nano_cpus: Optional[int] = None,
        cpu_period: Optional[int] = None,
        cpu_quota: Optional[int] = None,
        pids_limit: Optional[int] = None,
        network_mode: Optional[str] = None,
        ports: Optional[Dict[Any, Any]] = None,
        init: Optional[bool] = None,
        stdout: bool = True,
        stderr: bool = False,
        stream: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Runs a container. Without ``detach``: waits for it and returns its output (bytes;
        stdout, plus stderr with ``stderr=True``), raising ``ContainerError`` (with
        ``exit_status`` and ``stderr``) when it exits non-zero; with ``stream=True`` an
        iterator over the output as it comes. With ``detach=True``: returns the running
        ``Container`` (its output goes to ``logs()``). Ctrl-C while waiting kills the
        container and raises ``KeyboardInterrupt``."""
        if kwargs.pop("auto_remove", False):
            remove = True
        opts: Dict[str, Any] = dict(
            environment=environment,
            volumes=volumes,
            working_dir=working_dir,
            user=user,
            name=name,
            mem_limit=mem_limit,
            nano_cpus=nano_cpus,
            cpu_period=cpu_period,
            cpu_quota=cpu_quota,
            pids_limit=pids_limit,
            network_mode=network_mode,
            ports=ports,
            init=init,
            **kwargs,
        )
        if detach and stream:
            raise InvalidArgument("stream=True needs detach=False (use container.logs(stream=True))")
        rt = self.client._rt
        if detach:
            req = _convert.request(image, command, auto_remove=remove, **opts)
            return self._get_or_stub(rt.run_detached(req), req)
        if stream:
            req = _convert.request(image, command, **opts)
            return self._run_stream(rt.run_detached(req), req, command, image, remove, stdout, stderr)
        req = _convert.request(image, command, **opts)
        try:
            code, _oom, out, err, cid = rt.run(req, remove)
        except RuntimeFailure as e:
            if e.exit_code in (126, 127):
                raise ContainerError(None, e.exit_code, command, image, str(e).encode()) from e
            raise
        if code != 0:
            container = None if remove else self._try_get(cid)
            raise ContainerError(container, code, command, image, err)
        if stdout and stderr:
            return out + err
        if stderr:
            return err
        return out if stdout else b""

    def _run_stream(
        self,
        cid: str,
        req: Dict[str, Any],
        command: Any,
        image: Any,
        remove: bool,
        stdout: bool,
        stderr: bool,
    ) -> Iterator[bytes]:
        c = self._get_or_stub(cid, req)
        try:
            for chunk in c.logs(stdout=stdout, stderr=stderr, stream=True, follow=True):
                yield chunk
            code = c.wait()["StatusCode"]
            if code != 0:
                raise ContainerError(c, code, command, image, c.logs(stdout=False, stderr=True))
        finally:
            if remove:
                try:
                    c.remove(force=True)
                except NotFound:
                    pass

    def _try_get(self, cid: str) -> Optional[Container]:
        try:
            return self.get(cid)
        except NotFound:
            return None

    def _get_or_stub(self, cid: str, req: Dict[str, Any]) -> Container:
        c = self._try_get(cid)
        if c is not None:
            return c
        # Already over and removed (auto_remove): what is known of it.
        return Container(
            {"Id": cid, "Name": "/" + (req.get("name") or ""), "State": {"Status": "exited"}, "Image": req["image"]},
            self.client,
        )

    def prune(self, filters: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Removes every stopped container."""
        if filters:
            raise InvalidArgument("containers.prune: filters are not supported")
        return {"ContainersDeleted": self.client._rt.prune(), "SpaceReclaimed": 0}
