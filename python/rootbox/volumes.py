"""Volumes: ``client.volumes`` and ``Volume`` (the Docker SDK's shape)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .errors import InvalidArgument

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Volume", "VolumeCollection"]


class Volume:
    """A named volume. ``attrs`` holds its inspect JSON."""

    def __init__(self, attrs: Dict[str, Any], client: "Client") -> None:
        self.attrs: Dict[str, Any] = attrs
        self.client = client

    def __repr__(self) -> str:
        return f"<Volume: {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Volume) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def id(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return str(self.attrs["Name"])

    @property
    def mountpoint(self) -> str:
        return str(self.attrs.get("Mountpoint", ""))

    def reload(self) -> None:
        self.attrs = json.loads(self.client._rt.volume_inspect(self.name))

    def remove(self, force: bool = False) -> None:
        self.client._rt.volume_remove(self.name, force)


class VolumeCollection:
    """``client.volumes``."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def create(
        self,
        name: Optional[str] = None,
        driver: Optional[str] = None,
        driver_opts: Optional[Dict[str, str]] = None,
        labels: Optional[Dict[str, str]] = None,
    ) -> Volume:
        """Creates a volume (a random name when none is given); an existing one is returned."""
        if driver not in (None, "local"):
            raise InvalidArgument(f"volume driver {driver!r} is not supported (only 'local')")
        if driver_opts:
            raise InvalidArgument("volume driver_opts are not supported")
        return Volume(json.loads(self.client._rt.volume_create(name, dict(labels or {}))), self.client)

    def get(self, volume_id: str) -> Volume:
        return Volume(json.loads(self.client._rt.volume_inspect(volume_id)), self.client)

    def list(self, filters: Optional[Dict[str, Any]] = None) -> List[Volume]:
        if filters:
            raise InvalidArgument("volumes.list: filters are not supported")
        return [Volume(a, self.client) for a in json.loads(self.client._rt.volume_list())]

    def prune(self, filters: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Removes unused anonymous volumes (``filters={"all": True}``: every unused one)."""
        all_unused = bool((filters or {}).get("all", False))
        return {"VolumesDeleted": self.client._rt.volume_prune(all_unused), "SpaceReclaimed": 0}
