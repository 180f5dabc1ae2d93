"""rootbox: rootless Linux containers, in-process, with a Docker-SDK-like API.

    import rootbox
    client = rootbox.from_env()
    print(client.containers.run("busybox", "echo hello"))
"""

from ._rootbox import __version__
from .client import Client, from_env, run
from .containers import Container, ContainerCollection, ExecResult, ExecStream, LogStream
from .errors import (
    APIError,
    BuildError,
    Conflict,
    ContainerError,
    ContainerNotFound,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    ResourceLimitUnavailable,
    RootboxError,
    RuntimeFailure,
    VolumeNotFound,
)
from .images import Image, ImageCollection
from .volumes import Volume, VolumeCollection

__all__ = [
    "__version__",
    "Client",
    "from_env",
    "run",
    "Container",
    "ContainerCollection",
    "ExecResult",
    "ExecStream",
    "LogStream",
    "Image",
    "ImageCollection",
    "Volume",
    "VolumeCollection",
    "RootboxError",
    "NotFound",
    "ImageNotFound",
    "ContainerNotFound",
    "VolumeNotFound",
    "RuntimeFailure",
    "APIError",
    "Conflict",
    "ResourceLimitUnavailable",
    "InvalidArgument",
    "ContainerError",
    "BuildError",
]
