"""Registries: name -> builder dicts filled by decorators (datasets, encoders, methods, evaluations)."""
from __future__ import annotations

from typing import Callable


def registrar(registry: dict, kind: str) -> Callable:
    """`register(name)` decorator, or `register(name, obj)` call, that adds `obj` to `registry`
    under `name`; registering a name twice is an error naming the `kind` of thing."""
    def register(name: str, obj=None):
        def add(fn):
            if name in registry:
                raise KeyError(f"{kind} {name!r} registered twice")
            registry[name] = fn
            return fn
        return add if obj is None else add(obj)
    return register
