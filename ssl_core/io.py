"""Atomic file writes (a reader sees the old file or the new one, never half of one) and safe reads."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from ssl_core.lifetime import orphaned


def replace_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through `write(file)` into a temporary file beside `path`, then rename it over `path`; a process
    whose notebook or grid parent has died (ssl_core.lifetime) renames nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        if orphaned():
            raise RuntimeError(f"not writing {path}: the process that started this one has died")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on the file `path` (created if need be) across processes for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sweep_stale_temporaries(folder: Path, idle_seconds: float = 600.0) -> None:
    """Remove the `.<name>.*.tmp` files of `replace_atomically` in `folder` that nobody wrote to for `idle_seconds`.

    A writer killed mid-save leaves its temporary behind; a live one writes it without pause and renames
    it within seconds, so ten minutes without a write means its writer is gone (on any host).
    """
    cutoff = time.time() - idle_seconds
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):    # renamed by its writer, or removed by another sweep
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def save_atomic(obj, path: Path) -> None:
    """torch.save, atomically."""
    replace_atomically(path, lambda f: torch.save(obj, f))


def copy_atomic(source: Path, path: Path) -> None:
    """A copy of file `source` at `path`, atomically."""
    replace_atomically(path, lambda f: f.write(source.read_bytes()))


def safe_load(path: Path, map_location=None):
    """torch.load with weights_only=True: tensors and plain data only, never code a planted pickle would run.

    None if `path` is missing, damaged or refused; such a file is removed with a warning naming it.
    """
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        warnings.warn(f"{path} is damaged or holds more than tensors and plain data (torch.load with "
                      f"weights_only=True raised {type(err).__name__}); it was removed and will be recomputed")
        path.unlink(missing_ok=True)    # every torchrun rank reads the same file
        return None


def write_json(obj, path: Path) -> None:
    """JSON, atomically."""
    replace_atomically(path, lambda f: f.write(json.dumps(obj, indent=1, default=str).encode() + b"\n"))


def read_json(path: Path):
    """The parsed file, or None if it is missing or damaged (a damaged file is removed)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"damaged cache entry {path} was removed and will be recomputed")
        path.unlink()
        return None
