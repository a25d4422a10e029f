"""A notebook's kernel and its run workers end with the process that started them, and never write after it.

papermill and Jupyter start a kernel in a session of its own, so killing papermill's process group
(`kill -9 -- -PGID`) leaves the kernel running, free to write to the cache after its parent is gone; the
grid's worker processes outlive a dead kernel the same way. `watch_parent()` (called on importing
ssl_core inside a kernel, and in every worker) remembers the parent and exits this process as soon as it
is re-parented; `orphaned()` lets the atomic writer refuse the rename that would land after that.
"""
from __future__ import annotations

import os
import sys
import threading
import time

_parent: int | None = None


def orphaned() -> bool:
    """Whether the parent this process was watching has died."""
    return _parent is not None and os.getppid() != _parent


def watch_parent(parent: int | None = None, interval: float = 0.2) -> None:
    """Exit this process within `interval` seconds of its parent's death (once per process). `parent`: the pid
    that started it, where known (a worker's); a process whose parent died while it was still importing has
    already been re-parented, and exits at once instead of taking its new parent for the one to watch."""
    global _parent
    if _parent is not None:
        return
    _parent = parent or os.getppid()

    def watch():
        while not orphaned():
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="ssl_core-parent-watch", daemon=True).start()


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (papermill's, nbval's or Lab's)."""
    return "ipykernel" in sys.modules and hasattr(sys.modules["ipykernel"], "kernelapp") and \
        sys.modules["ipykernel"].kernelapp.IPKernelApp.initialized()
