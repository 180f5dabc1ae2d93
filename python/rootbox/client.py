"""The client: one state directory and one store, no daemon."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

from . import _monitor, _rootbox
from .containers import ContainerCollection
from .images import ImageCollection
from .volumes import VolumeCollection

__all__ = ["Client", "from_env", "run"]

StrPath = Union[str, "os.PathLike[str]"]


class Client:
    """rootbox in this process. ``root``: the store of images and volumes (default
    ``~/.local/share/rootbox``, like ``rootbox --root``); ``state_dir``: container state
    (default ``$XDG_RUNTIME_DIR/rootbox``, like ``rootbox --state-dir``). Clients over the same
    directories see the same containers as the ``rootbox`` command."""

    def __init__(self, root: Optional[StrPath] = None, state_dir: Optional[StrPath] = None) -> None:
        _monitor.install()
        self._rt = _rootbox.Runtime(
            os.fspath(state_dir) if state_dir is not None else None,
            os.fspath(root) if root is not None else None,
        )
        self.containers = ContainerCollection(self)
        self.images = ImageCollection(self)
        self.volumes = VolumeCollection(self)

    def __repr__(self) -> str:
        return f"<rootbox.Client root={str(self.root)!r} state_dir={str(self.state_dir)!r}>"

    @property
    def root(self) -> str:
        return os.fspath(self._rt.store_dir)

    @property
    def state_dir(self) -> str:
        return os.fspath(self._rt.state_dir)

    @classmethod
    def from_env(cls, environment: Optional[Mapping[str, str]] = None) -> "Client":
        """A client configured like the ``rootbox`` command: ``ROOTBOX_ROOT`` and
        ``ROOTBOX_STATE_DIR``."""
        env = os.environ if environment is None else environment
        return cls(root=env.get("ROOTBOX_ROOT") or None, state_dir=env.get("ROOTBOX_STATE_DIR") or None)

    def close(self) -> None:
        """Nothing to close (no daemon connection); for the Docker SDK's shape."""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def from_env(environment: Optional[Mapping[str, str]] = None) -> Client:
    """``Client.from_env()``."""
    return Client.from_env(environment)


def run(image: Any, command: Any = None, **kwargs: Any) -> Any:
    """One line: ``rootbox.run("busybox", "echo hi")`` is
    ``rootbox.from_env().containers.run("busybox", "echo hi")``."""
    return from_env().containers.run(image, command, **kwargs)
