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
