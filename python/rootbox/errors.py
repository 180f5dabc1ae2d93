"""The exceptions of rootbox, shaped like the Docker SDK's (``docker.errors``).

Every error that comes from the core carries its message (``str(e)``), and where known the
``errno``, the ``path`` involved and the ``exit_code`` a command line would use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    from .containers import Container

__all__ = [
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


class RootboxError(Exception):
    """Base of every rootbox error."""

    errno: Optional[int] = None
    """The errno behind the error, when there is one."""
    path: Optional[str] = None
    """The file involved, when there is one."""
    exit_code: int = 125
    """The exit code ``rootbox`` would exit with (127: command not found, 126: not executable)."""

    @property
    def explanation(self) -> str:
        """The message (the Docker SDK's name for it)."""
        return str(self)


class NotFound(RootboxError):
    """Something named does not exist."""


class ImageNotFound(NotFound):
    """No such image in the store."""


class ContainerNotFound(NotFound):
    """No such container (by id, name or id prefix)."""


class VolumeNotFound(NotFound):
    """No such volume."""


class RuntimeFailure(RootboxError):
    """The runtime could not do what was asked (the Docker SDK's ``APIError``)."""


APIError = RuntimeFailure


class Conflict(RuntimeFailure):
    """A name or object is in use (a container name, an image used by a container...)."""


class ResourceLimitUnavailable(RuntimeFailure):
    """A resource limit or usage figure needs cgroup v2 delegation this host does not give."""


class InvalidArgument(RootboxError, ValueError):
    """A bad argument: also a ``ValueError``."""


class ContainerError(RootboxError):
    """A container run by ``containers.run`` exited with a non-zero status."""

    def __init__(
        self,
        container: Optional["Container"],
        exit_status: int,
        command: Union[str, Sequence[str], None],
        image: Any,
        stderr: Optional[bytes],
    ) -> None:
        self.container = container
        self.exit_status = exit_status
        self.command = command
        self.image = image
        self.stderr = stderr
        self.exit_code = exit_status
        err = f": {stderr.decode('utf-8', 'replace').strip()}" if stderr else ""
        super().__init__(
            f"Command '{command}' in image '{image}' returned non-zero exit status {exit_status}{err}"
        )


class BuildError(RootboxError):
    """``images.build`` failed: a Dockerfile error or a failing step (docker-py's
    ``BuildError``). ``msg``: the reason, naming the Dockerfile line; ``build_log``: the build's
    log as docker-py gives it, an iterator of dicts (``{"stream": "..."}``, and last
    ``{"error": ..., "errorDetail": {"message": ...}}``)."""

    exit_code = 1

    def __init__(self, reason: str, build_log: Optional[Iterator[Dict[str, Any]]] = None) -> None:
        super().__init__(reason)
        self.msg = reason
        self.build_log: Iterator[Dict[str, Any]] = build_log if build_log is not None else iter(())
