"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO, Callable

import torch


def replace_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through `write(file)` into a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_atomic(obj, path: Path) -> None:
    """torch.save, atomically."""
    replace_atomically(path, lambda f: torch.save(obj, f))


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
