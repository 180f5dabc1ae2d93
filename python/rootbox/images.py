"""Images: ``client.images`` and ``Image`` (the Docker SDK's shape)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Union

from .errors import InvalidArgument

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Image", "ImageCollection"]

PathOrBytes = Union[str, "os.PathLike[str]", bytes]


class Image:
    """An image in the store. ``attrs`` holds Docker's image inspect JSON."""

    def __init__(self, attrs: Dict[str, Any], client: "Client") -> None:
        self.attrs: Dict[str, Any] = attrs
        self.client = client

    def __repr__(self) -> str:
        return f"<Image: {', '.join(repr(t) for t in self.tags) or self.short_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> str:
        """``sha256:<config digest>``, as Docker defines an image id."""
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        return self.id[:19] if self.id.startswith("sha256:") else self.id[:12]

    @property
    def tags(self) -> List[str]:
        return [str(t) for t in self.attrs.get("RepoTags") or []]

    @property
    def labels(self) -> Dict[str, str]:
        return dict((self.attrs.get("Config") or {}).get("Labels") or {})

    def reload(self) -> None:
        self.attrs = json.loads(self.client._rt.image_inspect(self.id))

    def tag(self, repository: str, tag: Optional[str] = None, **kwargs: Any) -> bool:
        """Names the image ``repository[:tag]`` too."""
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        target = f"{repository}:{tag}" if tag else repository
        self.client._rt.image_tag(self.id, target)
        self.reload()
        return True

    def history(self) -> List[Dict[str, Any]]:
        """The image's history entries, newest first."""
        out = []
        for h in reversed(self.attrs.get("History") or []):
            out.append(
                {
                    "Created": h.get("created", ""),
                    "CreatedBy": h.get("created_by", ""),
                    "Comment": h.get("comment", ""),
                    "EmptyLayer": bool(h.get("empty_layer", False)),
                    "Tags": None,
                }
            )
        return out

    def save_to(self, path: Union[str, "os.PathLike[str]"], format: str = "docker-archive", named: bool = True) -> None:
        """Writes the image to ``path``: ``docker-archive``, ``oci-archive`` or ``oci-dir``."""
        names = self.tags if named and self.tags else [self.id]
        self.client._rt.image_save(names, os.fspath(path), format)

    def save(self, chunk_size: int = 2 * 1024 * 1024, named: Union[bool, str] = False) -> Iterator[bytes]:
        """The image as a docker-archive tarball, in chunks (``docker save``). ``named``:
        keep its names (True) or one of them (a string)."""
        if isinstance(named, str):
            if named not in self.tags:
                raise InvalidArgument(f"{named!r} is not a tag of image {self.short_id}")
            names = [named]
        elif named:
            names = self.tags or [self.id]
        else:
            names = [self.id]
        d = tempfile.mkdtemp(prefix="rootbox-save-")
        try:
            out = os.path.join(d, "image.tar")
            self.client._rt.image_save(names, out, "docker-archive")
            with open(out, "rb") as f:
                while True:
                    b = f.read(chunk_size)
                    if not b:
                        break
                    yield b
        finally:
            shutil.rmtree(d, ignore_errors=True)


def _with_file(data: PathOrBytes, fn: Any) -> Any:
    """Calls ``fn(path)`` with a path: ``data`` itself, or a temporary file holding its bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        d = tempfile.mkdtemp(prefix="rootbox-load-")
        try:
            p = os.path.join(d, "data.tar")
            with open(p, "wb") as f:
                f.write(data)
            return fn(p)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    if isinstance(data, (str, os.PathLike)):
        return fn(os.fspath(data))
    raise TypeError("expected a path or bytes")


class ImageCollection:
    """``client.images``. (``build`` is not available yet: rootbox has no image builder.)"""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def get(self, name: str) -> Image:
        """An image by name, id or id prefix (``ImageNotFound`` otherwise)."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"invalid image reference {name!r}")
        return Image(json.loads(self.client._rt.image_inspect(name)), self.client)

    def list(self, name: Optional[str] = None, all: bool = False, filters: Optional[Dict[str, Any]] = None) -> List[Image]:
        """Every image (with ``name``: those with a tag of that repository)."""
        if filters:
            raise InvalidArgument("images.list: filters are not supported")
        images = [Image(a, self.client) for a in json.loads(self.client._rt.images())]
        if name:
            repo = name.split(":")[0] if name.count(":") == 1 and "/" not in name.split(":")[1] else name
            images = [
                i for i in images
                if any(t == name or t.rsplit(":", 1)[0] == repo for t in i.tags)
            ]
        return images

    def remove(self, image: str, force: bool = False, noprune: bool = False) -> List[str]:
        """Removes a name (the image goes with its last name) or an image by id."""
        return self.client._rt.image_remove([image], force)

    def prune(self, filters: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Removes dangling images (``filters={"dangling": False}``: every unused one)."""
        all_unused = bool(filters) and str((filters or {}).get("dangling", True)).lower() in ("false", "0")
        deleted, freed = self.client._rt.image_prune(all_unused)
        return {"ImagesDeleted": [{"Deleted": d} for d in deleted], "SpaceReclaimed": freed}

    def load(self, data: PathOrBytes) -> List[Image]:
        """Loads a docker-archive or OCI archive (bytes or a path), or an OCI layout directory."""
        ids = _with_file(data, self.client._rt.image_load)
        return [self.get(i) for i in ids]

    def import_(
        self,
        source: PathOrBytes,
        repository: Optional[str] = None,
        tag: Optional[str] = None,
        changes: Optional[Sequence[str]] = None,
        message: Optional[str] = None,
    ) -> Image:
        """A root filesystem tarball (a path or bytes; gzip/zstd too) as a one-layer image,
        named ``repository[:tag]`` when given. ``changes``: Dockerfile-like lines (CMD, ENV...)."""
        ref = None
        if repository:
            ref = f"{repository}:{tag}" if tag else repository
        elif tag:
            raise InvalidArgument("a tag needs a repository")
        iid = _with_file(
            source,
            lambda p: self.client._rt.image_import(p, ref, list(changes or []), message),
        )
        return self.get(iid)
