"""rootbox: rootless Linux containers (Python API over the Rust core)."""

from ._rootbox import __version__

__all__ = ["__version__"]
