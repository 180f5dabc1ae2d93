"""The client: one state directory and one store, no daemon."""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from . import _convert, _monitor, _rootbox
from .containers import ContainerCollection
from .errors import InvalidArgument
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
        # Credentials given to login(), per registry, for this client's pulls and pushes.
        self._logins: Dict[str, Tuple[str, str]] = {}
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

    def login(
        self,
        username: str,
        password: Optional[str] = None,
        email: Optional[str] = None,
        registry: Optional[str] = None,
        reauth: bool = False,
        dockercfg_path: Optional[StrPath] = None,
    ) -> Dict[str, Any]:
        """Checks the credentials with ``registry`` (default ``docker.io``), uses them for this
        client's pulls and pushes there, and stores them as ``rootbox login`` does: in
        ``dockercfg_path`` when given, else ``$REGISTRY_AUTH_FILE``, else
        ``$XDG_RUNTIME_DIR/containers/auth.json``, else ``~/.config/containers/auth.json``.
        Raises ``RuntimeFailure`` for wrong credentials or an unreachable registry."""
        if not isinstance(username, str) or not username:
            raise InvalidArgument("login needs a user name")
        if not password:
            raise InvalidArgument("login needs a password")
        reg = registry or "docker.io"
        self._rt.login(reg, username, password, os.fspath(dockercfg_path) if dockercfg_path is not None else None)
        self._logins[_convert.registry_key(reg, bare=True)] = (username, password)
        return {"IdentityToken": "", "Status": "Login Succeeded"}

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
