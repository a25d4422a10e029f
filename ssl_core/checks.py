"""The checks every public entry point runs on its arguments before any compute: each raises ValueError naming
the parameter, its bad value and what is allowed. A leaf: it imports nothing of the project, so every module
(the registries included) can check its own arguments with it."""
from __future__ import annotations

import math

TYPE_WORDS = {str: "a string (str)", int: "an integer (int)", float: "a number (float)", bool: "True or False (bool)"}


def typed(name: str, value, kind: type):
    """`value` if it is a `kind` (str, int, float or bool: a bool is no int, an int is a float and is returned as
    one); else raise naming the parameter. A float must be finite."""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(f"{name}={value!r} has the wrong type: expected {TYPE_WORDS[kind]}")
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} is not allowed: must be a finite number")
        return float(value)
    return value


def choose(name: str, value, allowed) -> None:
    """Raise unless `value` is one of `allowed` (a sequence or a registry dict)."""
    try:
        ok = value in allowed
    except TypeError:   # unhashable: a list or dict where a name was expected
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {sorted(allowed)}")


def choose_each(name: str, values, allowed) -> None:
    """Raise unless `values` is a list or tuple of elements of `allowed`."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name}={values!r} has the wrong type: expected a list or tuple of names from "
                         f"{sorted(allowed)}, e.g. {tuple(sorted(allowed)[:1])}")
    for value in values:
        choose(name, value, allowed)


def at_least(name: str, value, low) -> None:
    if not value >= low:
        raise ValueError(f"{name}={value!r} is not allowed: must be >= {low}")


def within(name: str, value, low, high) -> None:
    """Raise unless low <= value <= high (high None: no upper bound)."""
    at_least(name, value, low)
    if high is not None and not value <= high:
        raise ValueError(f"{name}={value!r} is not allowed: must be <= {high}")


def positive(name: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed: must be > 0")
