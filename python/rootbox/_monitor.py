"""The monitor of detached containers, hosted by this package's own extension module.

``containers.run(detach=True)`` and ``create`` start a small monitor process that owns the
container (like ``rootbox-monitor``, or podman's conmon). A wheel carries no executables, so
the monitor is this interpreter running the core's monitor code from ``rootbox._rootbox``:
``python -I -c <BOOT> --root ... --id ... --mode ...``. ``$ROOTBOX_MONITOR`` (a
``rootbox-monitor`` binary of the same version) takes precedence when set.
"""

from __future__ import annotations

import os
import sys

from . import _rootbox

_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from rootbox._rootbox import monitor_main; monitor_main(sys.argv[1:])"
)


def install() -> bool:
    """Makes this interpreter the monitor program of the core (once per process)."""
    exe = sys.executable or "python3"
    return _rootbox.set_monitor(exe, ["-I", "-c", _BOOT, _PARENT])
