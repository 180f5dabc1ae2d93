"""Docker-SDK keyword arguments -> the core's run request (the flags of ``rootbox run``)."""

from __future__ import annotations

import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import InvalidArgument

Command = Union[str, Sequence[str], None]


def command_list(command: Command, what: str = "command") -> List[str]:
    """A command as a list: a string is split like a shell would (as the Docker SDK does)."""
    if command is None:
        return []
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError as e:
            raise InvalidArgument(f"invalid {what} {command!r}: {e}") from None
    if isinstance(command, (list, tuple)):
        out = []
        for c in command:
            if not isinstance(c, str):
                raise TypeError(f"{what} must be a string or a list of strings, got {c!r} in it")
            out.append(c)
        return out
    raise TypeError(f"{what} must be a string or a list of strings, not {type(command).__name__}")


def env_list(environment: Union[Mapping[str, Any], Sequence[str], None]) -> List[str]:
    if environment is None:
        return []
    if isinstance(environment, Mapping):
        out = []
        for k, v in environment.items():
            if not isinstance(k, str) or not k or "=" in k:
                raise InvalidArgument(f"invalid environment variable name {k!r}")
            out.append(f"{k}={'' if v is None else v}")
        return out
    if isinstance(environment, (list, tuple)):
        for e in environment:
            if not isinstance(e, str) or not e or e.startswith("="):
                raise InvalidArgument(f"invalid environment entry {e!r}: use NAME=VALUE")
        return list(environment)
    raise TypeError("environment must be a dict or a list of NAME=VALUE strings")


def volume_list(volumes: Union[Mapping[str, Any], Sequence[str], None]) -> List[str]:
    """``{"/host": {"bind": "/ctr", "mode": "ro"}}``, ``{"name": "/ctr"}`` or ``["/host:/ctr:ro"]``."""
    if volumes is None:
        return []
    if isinstance(volumes, Mapping):
        out = []
        for src, spec in volumes.items():
            if isinstance(spec, str):
                out.append(f"{src}:{spec}")
            elif isinstance(spec, Mapping) and "bind" in spec:
                mode = spec.get("mode", "rw")
                out.append(f"{src}:{spec['bind']}:{mode}")
            else:
                raise InvalidArgument(
                    f"invalid volume {src!r}: {spec!r} (use {{'bind': '/path', 'mode': 'ro'}})"
                )
        return out
    if isinstance(volumes, (list, tuple)):
        for v in volumes:
            if not isinstance(v, str):
                raise TypeError(f"volumes must be strings like '/host:/ctr:ro', got {v!r}")
        return list(volumes)
    raise TypeError("volumes must be a dict or a list of strings")


def port_list(ports: Optional[Mapping[Any, Any]]) -> List[str]:
    """``{"80/tcp": 8080}``, ``{"80": None}`` (a free port), ``{"80": ("127.0.0.1", 8080)}``,
    ``{"80": [8080, 8081]}``."""
    if ports is None:
        return []
    if not isinstance(ports, Mapping):
        raise TypeError("ports must be a dict {container_port: host_port}")
    out = []
    for ctr, host in ports.items():
        ctr = str(ctr)
        binds = host if isinstance(host, list) else [host]
        for b in binds:
            if b is None:
                out.append(ctr)
            elif isinstance(b, tuple):
                if len(b) == 1:
                    out.append(f"{b[0]}::{ctr}")
                elif len(b) == 2:
                    out.append(f"{b[0]}:{b[1]}:{ctr}")
                else:
                    raise InvalidArgument(f"invalid port binding {b!r} for {ctr}")
            else:
                out.append(f"{b}:{ctr}")
    return out


def _size(v: Union[int, str], what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(f"{what} must be bytes (int) or a string like '64m'")
    if isinstance(v, int) and v < 0:
        raise InvalidArgument(f"invalid {what} {v}: must not be negative")
    return str(v)


def _int(v: Any, what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    return str(v)


def resources(
    mem_limit: Union[int, str, None] = None,
    memswap_limit: Union[int, str, None] = None,
    mem_reservation: Union[int, str, None] = None,
    nano_cpus: Optional[int] = None,
    cpu_period: Optional[int] = None,
    cpu_quota: Optional[int] = None,
    cpu_shares: Optional[int] = None,
    cpuset_cpus: Optional[str] = None,
    cpuset_mems: Optional[str] = None,
    pids_limit: Optional[int] = None,
    blkio_weight: Optional[int] = None,
) -> List[Tuple[str, str]]:
    r: List[Tuple[str, str]] = []
    if mem_limit is not None:
        r.append(("memory", _size(mem_limit, "mem_limit")))
    if memswap_limit is not None:
        r.append(("memory-swap", _size(memswap_limit, "memswap_limit")))
    if mem_reservation is not None:
        r.append(("memory-reservation", _size(mem_reservation, "mem_reservation")))
    if nano_cpus is not None:
        _int(nano_cpus, "nano_cpus")
        if nano_cpus <= 0:
            raise InvalidArgument(f"invalid nano_cpus {nano_cpus}: must be positive")
        r.append(("cpus", f"{nano_cpus / 1e9:.9g}"))
    if cpu_period is not None:
        r.append(("cpu-period", _int(cpu_period, "cpu_period")))
    if cpu_quota is not None:
        r.append(("cpu-quota", _int(cpu_quota, "cpu_quota")))
    if cpu_shares is not None:
        r.append(("cpu-shares", _int(cpu_shares, "cpu_shares")))
    if cpuset_cpus is not None:
        r.append(("cpuset-cpus", str(cpuset_cpus)))
    if cpuset_mems is not None:
        r.append(("cpuset-mems", str(cpuset_mems)))
    if pids_limit is not None:
        r.append(("pids-limit", _int(pids_limit, "pids_limit")))
    if blkio_weight is not None:
        r.append(("blkio-weight", _int(blkio_weight, "blkio_weight")))
    return r


def tmpfs_list(tmpfs: Union[Mapping[str, str], Sequence[str], None]) -> List[str]:
    if tmpfs is None:
        return []
    if isinstance(tmpfs, Mapping):
        return [f"{k}:{v}" if v else k for k, v in tmpfs.items()]
    return list(tmpfs)


def image_ref(image: Any) -> str:
    from .images import Image

    if isinstance(image, Image):
        return image.tags[0] if image.tags else image.id
    if not isinstance(image, str):
        raise TypeError(f"image must be a string or an Image, not {type(image).__name__}")
    if not image:
        raise InvalidArgument("empty image reference")
    return image


def request(image: Any, command: Command, **kw: Any) -> Dict[str, Any]:
    """The core's request dict; ``kw`` are ``ContainerCollection.create``'s arguments."""
    req: Dict[str, Any] = {"image": image_ref(image), "command": command_list(command)}
    entrypoint = kw.pop("entrypoint", None)
    if entrypoint is not None:
        ep = command_list(entrypoint, "entrypoint")
        if len(ep) > 1:
            # The core takes one program; the rest goes before the command.
            req["command"] = ep[1:] + req["command"]
        req["entrypoint"] = ep[0] if ep else ""
    req["env"] = env_list(kw.pop("environment", None))
    req["volumes"] = volume_list(kw.pop("volumes", None))
    req["tmpfs"] = tmpfs_list(kw.pop("tmpfs", None))
    req["publish"] = port_list(kw.pop("ports", None))
    if kw.pop("publish_all_ports", False):
        req["publish_all"] = True
    for py, core in (
        ("working_dir", "workdir"),
        ("user", "user"),
        ("name", "name"),
        ("hostname", "hostname"),
        ("network_mode", "network"),
        ("stop_signal", "stop_signal"),
        ("cgroup_parent", "cgroup_parent"),
    ):
        v = kw.pop(py, None)
        if v is not None:
            if isinstance(v, int) and py == "user":
                v = str(v)
            if not isinstance(v, str):
                raise TypeError(f"{py} must be a string, not {type(v).__name__}")
            req[core] = v
    if kw.pop("init", None):
        req["init"] = True
    if kw.pop("read_only", None):
        req["read_only"] = True
    if kw.pop("auto_remove", None):
        req["auto_remove"] = True
    st = kw.pop("stop_timeout", None)
    if st is not None:
        req["stop_timeout"] = int(_int(st, "stop_timeout"))
    for py, core in (("dns", "dns"), ("dns_search", "dns_search"), ("security_opt", "security_opt")):
        v = kw.pop(py, None)
        if v is not None:
            req[core] = [str(x) for x in v]
    hosts = kw.pop("extra_hosts", None)
    if hosts is not None:
        if isinstance(hosts, Mapping):
            req["add_hosts"] = [f"{h}:{ip}" for h, ip in hosts.items()]
        else:
            req["add_hosts"] = list(hosts)
    res_keys = (
        "mem_limit",
        "memswap_limit",
        "mem_reservation",
        "nano_cpus",
        "cpu_period",
        "cpu_quota",
        "cpu_shares",
        "cpuset_cpus",
        "cpuset_mems",
        "pids_limit",
        "blkio_weight",
    )
    req["resources"] = resources(**{k: kw.pop(k, None) for k in res_keys})
    limits = kw.pop("cgroup_limits", None)
    if limits is not None:
        req["cgroup_limits"] = limits
    if kw:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kw))}")
    return req


# ---- images: references, registries ---------------------------------------------------------

def parse_repository_tag(name: str) -> Tuple[str, Optional[str]]:
    """``repo:tag`` / ``repo@sha256:...`` -> ``(repo, tag or digest)`` (docker-py's rule: a
    ``:`` followed by a ``/`` is a registry port, not a tag)."""
    parts = name.rsplit("@", 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    parts = name.rsplit(":", 1)
    if len(parts) == 2 and "/" not in parts[1]:
        return parts[0], parts[1]
    return name, None


def registry_key(name: str, bare: bool = False) -> str:
    """The registry an image name refers to: ``host[:port]``, or ``docker.io`` for Docker Hub
    names such as ``busybox`` or ``user/app``. ``bare``: ``name`` is a registry itself (as
    ``login`` takes it: ``127.0.0.1:5000``, ``https://registry.example/v2/``)."""
    s = name.strip()
    explicit = bare
    for scheme in ("https://", "http://"):
        if s.startswith(scheme):
            s = s[len(scheme):]
            explicit = True
            break
    first, sep, _ = s.partition("/")
    if explicit or (sep and ("." in first or ":" in first or first == "localhost")):
        host = first
    else:
        host = "docker.io"
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = "docker.io"
    return host


def auth_credentials(auth_config: Optional[Mapping[str, Any]]) -> Optional[Tuple[str, str]]:
    """``(username, password)`` from docker-py's ``auth_config`` (``username``/``password``,
    or ``auth``: base64 of ``user:password``)."""
    if auth_config is None:
        return None
    if not isinstance(auth_config, Mapping):
        raise TypeError("auth_config must be a dict like {'username': ..., 'password': ...}")
    user = auth_config.get("username")
    password = auth_config.get("password")
    if user is None and auth_config.get("auth"):
        import base64
        import binascii

        try:
            text = base64.b64decode(str(auth_config["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument("auth_config['auth'] is not base64 of 'user:password'") from None
        user, _, password = text.partition(":")
    if auth_config.get("identitytoken") or auth_config.get("registrytoken"):
        raise InvalidArgument("auth_config: identity and registry tokens are not supported; give username and password")
    if not isinstance(user, str) or not user:
        raise InvalidArgument("auth_config needs a non-empty 'username' (and a 'password')")
    if password is not None and not isinstance(password, str):
        raise TypeError("auth_config['password'] must be a string")
    return user, password or ""


# ---- archives -------------------------------------------------------------------------------

_GO_TYPE_BITS = {
    0o040000: 1 << 31,  # directory: ModeDir
    0o120000: 1 << 27,  # symlink: ModeSymlink
    0o010000: 1 << 25,  # fifo: ModeNamedPipe
    0o140000: 1 << 24,  # socket: ModeSocket
    0o060000: 1 << 26,  # block device: ModeDevice
    0o020000: (1 << 26) | (1 << 21),  # character device: ModeDevice | ModeCharDevice
}


def go_file_mode(st_mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode``, the ``mode`` of Docker's path stat."""
    mode = st_mode & 0o777
    mode |= _GO_TYPE_BITS.get(st_mode & 0o170000, 0)
    if st_mode & 0o4000:
        mode |= 1 << 23  # ModeSetuid
    if st_mode & 0o2000:
        mode |= 1 << 22  # ModeSetgid
    if st_mode & 0o1000:
        mode |= 1 << 20  # ModeSticky
    return mode


def rfc3339(seconds: int, nanoseconds: int = 0) -> str:
    """A time as Docker's JSON has it (RFC 3339, UTC, fractional seconds without trailing zeros)."""
    import time

    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    frac = f".{nanoseconds:09d}".rstrip("0") if nanoseconds > 0 else ""
    return base + frac + "Z"


def read_data(data: Any, what: str = "data") -> bytes:
    """Bytes from bytes, a binary file object, or an iterable of bytes chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        raise TypeError(f"{what} must be bytes or a binary file, not str")
    read = getattr(data, "read", None)
    if callable(read):
        b = read()
        if not isinstance(b, (bytes, bytearray)):
            raise TypeError(f"{what}: the file must be opened in binary mode")
        return bytes(b)
    try:
        chunks = list(data)
    except TypeError:
        raise TypeError(f"{what} must be bytes, a binary file or an iterable of bytes, not {type(data).__name__}") from None
    for c in chunks:
        if not isinstance(c, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what}: chunks must be bytes, got {type(c).__name__}")
    return b"".join(bytes(c) for c in chunks)


def decompress(data: bytes, what: str = "archive") -> bytes:
    """A tar compressed with gzip, bzip2 or xz (as Docker accepts) uncompressed; others as they are."""
    try:
        if data[:2] == b"\x1f\x8b":
            import gzip

            return gzip.decompress(data)
        if data[:3] == b"BZh":
            import bz2

            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            import lzma

            return lzma.decompress(data)
    except (OSError, EOFError, ValueError) as e:
        raise InvalidArgument(f"{what}: cannot decompress: {e}") from None
    return data
