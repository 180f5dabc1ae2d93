"""Images: ``client.images`` and ``Image`` (the Docker SDK's shape)."""

from __future__ import annotations

import io
import json
import os
import platform as _platform
import shutil
import tarfile
import tempfile
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from . import _convert
from .errors import BuildError, ImageNotFound, InvalidArgument

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


_REMOTE = ("http://", "https://", "git://", "github.com/", "git@")

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def _log_chunks(output: bytes) -> List[Dict[str, Any]]:
    """Build output as docker-py's log: one ``{"stream": line}`` per line."""
    text = output.decode("utf-8", "replace")
    return [{"stream": line} for line in text.splitlines(keepends=True)]


def _extract_context(fileobj: Any, dest: str) -> None:
    """A build context given as a tar (plain, gzip, bzip2 or xz) extracted into ``dest``;
    members leaving it (absolute, ``..``, links out of it) and special files are refused."""
    data = _convert.read_data(fileobj, "fileobj")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            for m in t.getmembers():
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if m.name.startswith("/") or ".." in parts:
                    raise InvalidArgument(f"build context tar: refusing {m.name!r}: it leaves the context")
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise InvalidArgument(f"build context tar: refusing {m.name!r}: not a file, directory or link")
                if (m.issym() or m.islnk()) and (m.linkname.startswith("/") or ".." in m.linkname.split("/")):
                    raise InvalidArgument(
                        f"build context tar: refusing link {m.name!r} -> {m.linkname!r}: it points out of the context"
                    )
            if hasattr(tarfile, "data_filter"):
                t.extractall(dest, filter="data")
            else:  # pragma: no cover  (Pythons without extraction filters; checked above)
                t.extractall(dest)
    except tarfile.TarError as e:
        raise InvalidArgument(f"fileobj is not a tar archive of a build context: {e}") from None


class ImageCollection:
    """``client.images``."""

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

    # ---- registries -------------------------------------------------------------------------

    def _credentials(self, name: str, auth_config: Optional[Mapping[str, Any]]) -> Tuple[Optional[str], Optional[str]]:
        creds = _convert.auth_credentials(auth_config)
        if creds is None:
            creds = self.client._logins.get(_convert.registry_key(name))
        return (creds[0], creds[1]) if creds else (None, None)

    def _pull_one(self, reference: str, platform: Optional[str], user: Optional[str], password: Optional[str]) -> Image:
        t = self.client._rt.pull(reference, platform, user, password)
        while t.next() is not None:
            pass
        if t.result is None:  # pragma: no cover  (next() raises the transfer's error)
            raise ImageNotFound(f"pulling {reference} gave no image")
        return self.get(t.result)

    @overload
    def pull(
        self,
        repository: str,
        tag: Optional[str] = ...,
        all_tags: Literal[False] = ...,
        platform: Optional[str] = ...,
        auth_config: Optional[Mapping[str, Any]] = ...,
        **kwargs: Any,
    ) -> Image: ...

    @overload
    def pull(
        self,
        repository: str,
        tag: Optional[str] = ...,
        *,
        all_tags: Literal[True],
        platform: Optional[str] = ...,
        auth_config: Optional[Mapping[str, Any]] = ...,
        **kwargs: Any,
    ) -> List[Image]: ...

    @overload
    def pull(
        self,
        repository: str,
        tag: Optional[str] = ...,
        all_tags: bool = ...,
        platform: Optional[str] = ...,
        auth_config: Optional[Mapping[str, Any]] = ...,
        **kwargs: Any,
    ) -> Union[Image, List[Image]]: ...

    def pull(
        self,
        repository: str,
        tag: Optional[str] = None,
        all_tags: bool = False,
        platform: Optional[str] = None,
        auth_config: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Union[Image, List[Image]]:
        """Pulls ``repository:tag`` (default tag ``latest``; ``repository`` may carry the tag
        or an ``@sha256:`` digest) into the store and returns the Image; with ``all_tags``
        every tag of the repository, as a list. ``platform``: ``os/arch[/variant]`` from a
        multi-arch image. ``auth_config``: ``{"username": ..., "password": ...}`` for this
        pull (nothing is stored); else credentials of ``login()`` or the stored ones
        (``rootbox login``). ``localhost``/``127.0.0.1`` registries may be plain HTTP, others
        only when listed insecure in registries.conf (as for ``rootbox pull``).
        Raises ``ImageNotFound`` for an unknown repository or tag, ``InvalidArgument`` for a
        bad reference, ``RuntimeFailure`` for the rest (unreachable, unauthorized...)."""
        kwargs.pop("stream", None)  # docker-py ignores it too
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if not isinstance(repository, str) or not repository:
            raise InvalidArgument(f"invalid image reference {repository!r}")
        repo, image_tag = _convert.parse_repository_tag(repository)
        user, password = self._credentials(repo, auth_config)
        if all_tags:
            images: List[Image] = []
            for t in self.client._rt.registry_tags(repo, user, password):
                img = self._pull_one(f"{repo}:{t}", platform, user, password)
                if img not in images:
                    images.append(img)
            return images
        tag = tag or image_tag or "latest"
        sep = "@" if tag.startswith("sha256:") else ":"
        return self._pull_one(f"{repo}{sep}{tag}", platform, user, password)

    def push(
        self,
        repository: str,
        tag: Optional[str] = None,
        stream: bool = False,
        decode: bool = False,
        auth_config: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> Any:
        """Pushes ``repository:tag`` (without a tag: every tag of ``repository`` in the store)
        to its registry. Returns the progress as docker's JSON lines (a str); with
        ``stream=True`` an iterator over them (bytes, or dicts with ``decode=True``). A
        failure raises (``ImageNotFound`` for an image not in the store, ``RuntimeFailure``
        for a refused or failed upload). ``auth_config`` as for ``pull``."""
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if not isinstance(repository, str) or not repository:
            raise InvalidArgument(f"invalid image reference {repository!r}")
        repo, image_tag = _convert.parse_repository_tag(repository)
        tag = tag or image_tag
        if tag and tag.startswith("sha256:"):
            raise InvalidArgument(f"push {repository}: give a tag to push to, not a digest")
        if tag:
            refs = [f"{repo}:{tag}"]
            self.get(refs[0])
        else:
            refs = sorted({t for i in self.list(name=repo) for t in i.tags if t.rsplit(":", 1)[0] == repo})
            if not refs:
                raise ImageNotFound(f"no image named {repo} in the store (push needs one of its tags)")
        user, password = self._credentials(repo, auth_config)

        def events() -> Iterator[Dict[str, Any]]:
            for ref in refs:
                yield {"status": f"The push refers to repository [{repo}]"}
                t = self.client._rt.push(ref, None, user, password)
                while True:
                    line = t.next()
                    if line is None:
                        break
                    yield json.loads(line)

        if not stream:
            return "".join(json.dumps(e) + "\r\n" for e in events())
        if decode:
            return events()
        return (json.dumps(e).encode() + b"\r\n" for e in events())

    # ---- build ------------------------------------------------------------------------------

    def build(
        self,
        path: Optional[Union[str, "os.PathLike[str]"]] = None,
        fileobj: Optional[Union[IO[bytes], IO[str], bytes]] = None,
        tag: Optional[Union[str, Sequence[str]]] = None,
        quiet: bool = False,
        nocache: bool = False,
        rm: bool = True,
        timeout: Optional[int] = None,
        custom_context: bool = False,
        encoding: Optional[str] = None,
        pull: bool = False,
        forcerm: bool = False,
        dockerfile: Optional[str] = None,
        buildargs: Optional[Mapping[str, str]] = None,
        container_limits: Optional[Mapping[str, Any]] = None,
        shmsize: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
        cache_from: Optional[Sequence[str]] = None,
        target: Optional[str] = None,
        network_mode: Optional[str] = None,
        squash: Optional[bool] = None,
        extra_hosts: Optional[Mapping[str, str]] = None,
        platform: Optional[str] = None,
        isolation: Optional[str] = None,
        use_config_proxy: bool = True,
    ) -> Tuple[Image, Iterator[Dict[str, Any]]]:
        """Builds an image from a Dockerfile, as ``rootbox build`` does (one layer per RUN,
        COPY and ADD, with a cache; RUN steps are rootless containers): ``(Image, logs)``
        where ``logs`` iterates docker-py's dicts (``{"stream": "STEP 1/3: FROM ..."}``).
        The context is ``path`` (a directory), or ``fileobj``: a Dockerfile (no other
        files), or with ``custom_context=True`` a tar of the whole context. ``dockerfile``:
        its path inside the context (default ``Dockerfile``). ``tag``: ``name[:tag]``
        (a list for several). A failing step or Dockerfile error raises ``BuildError``
        (``msg`` naming the line, ``build_log``). Intermediate containers are always removed
        (``rm``/``forcerm`` have nothing to change); ``timeout``, ``encoding`` and
        ``use_config_proxy`` concern a daemon connection and are ignored. Not supported
        (``InvalidArgument``): ``pull``, ``container_limits``, ``shmsize``, ``cache_from``,
        ``squash``, ``extra_hosts``, ``isolation``, a ``platform`` other than this host's.
        Ctrl-C cancels the build: the running step's container is killed and removed, no
        image is tagged, and ``KeyboardInterrupt`` is raised."""
        for name, value in (
            ("pull", pull),
            ("container_limits", container_limits),
            ("shmsize", shmsize),
            ("cache_from", cache_from),
            ("squash", squash),
            ("extra_hosts", extra_hosts),
            ("isolation", isolation),
        ):
            if value:
                raise InvalidArgument(f"images.build: {name} is not supported by rootbox build")
        if platform:
            host = f"linux/{_ARCH.get(_platform.machine(), _platform.machine())}"
            if platform != host:
                raise InvalidArgument(f"images.build: platform {platform!r}: only this host's platform {host} can be built")
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        for t in tags:
            if not isinstance(t, str) or not t:
                raise InvalidArgument(f"invalid build tag {t!r}")
        args = [f"{k}={'' if v is None else v}" for k, v in (buildargs or {}).items()]
        label_list = [f"{k}={v}" for k, v in (labels or {}).items()]
        for k in list(buildargs or {}) + list(labels or {}):
            if not isinstance(k, str) or not k or "=" in k:
                raise InvalidArgument(f"invalid build argument or label name {k!r}")
        tmp: Optional[str] = None
        try:
            if custom_context:
                if fileobj is None:
                    raise InvalidArgument("custom_context=True needs fileobj: a tar of the build context")
                tmp = tempfile.mkdtemp(prefix="rootbox-build-")
                context = os.path.join(tmp, "context")
                os.mkdir(context)
                _extract_context(fileobj, context)
            elif fileobj is not None:
                data = fileobj if isinstance(fileobj, (bytes, bytearray)) else fileobj.read()
                if isinstance(data, str):
                    data = data.encode("utf-8")
                tmp = tempfile.mkdtemp(prefix="rootbox-build-")
                context = os.path.join(tmp, "context")
                os.mkdir(context)
                with open(os.path.join(context, "Dockerfile"), "wb") as f:
                    f.write(bytes(data))
                dockerfile = None
            elif path is None:
                raise InvalidArgument("images.build needs path (a context directory) or fileobj (a Dockerfile)")
            else:
                context = os.fspath(path)
                if context.startswith(_REMOTE):
                    raise InvalidArgument(f"build context {context!r}: remote contexts (URLs, git) are not supported")
                if not os.path.isdir(context):
                    raise InvalidArgument(f"build context {context!r} is not a directory")
            df = os.path.join(context, dockerfile or "Dockerfile")
            if not os.path.isfile(df):
                raise InvalidArgument(f"Dockerfile {df!r} not found" + (" in the build context" if not dockerfile else ""))
            try:
                iid, output = self.client._rt.build(
                    context, df, tags, args, target, bool(nocache), label_list, network_mode
                )
            except BuildError as e:
                log = _log_chunks(getattr(e, "output", b""))
                log.append({"errorDetail": {"message": e.msg}, "error": e.msg})
                e.build_log = iter(log)
                raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        image = self.get(iid)
        logs = [{"stream": iid + "\n"}] if quiet else _log_chunks(output)
        return image, iter(logs)
