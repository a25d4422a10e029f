"""Every notebook's presets, and `resolve()`: preset values overridden by the knobs a user set.

smoke   seconds per notebook on a 2-core CPU; exercises every code path (CI runs it under nbval)
default the embedded data, minutes per notebook on a 2-core CPU, several seeds; the committed figures
paper   real datasets on a GPU, closer to the papers' protocols
"""
from __future__ import annotations

from ssl_core.config import RunConfig, at_least, choose

# Sized from measurements on the 2-core AVX2 machine CI runs on (no bf16 there): an eighth-width
# (8) CIFAR ResNet-18 runs SimCLR at ~130-220 images/s in fp32 while other jobs share the cores.
PRESETS: dict[str, dict[str, dict]] = {
    "04_dcl_batch_size": {
        "smoke": dict(budget=1.0, batch_sizes=[16, 64], losses=["simclr", "dcl", "dclw"], seeds=2,
                      temperatures=[0.1, 0.5], small_batch=16, dataset="curated", dataset_size=256,
                      encoder="resnet18", width=8, lr=1e-3, temperature=0.1, device="auto", backend="local"),
        "default": dict(budget=2.0, batch_sizes=[16, 64, 256], losses=["simclr", "dcl", "dclw"], seeds=3,
                        temperatures=[0.05, 0.1, 0.5], small_batch=16, dataset="curated", dataset_size=0,
                        encoder="resnet10", width=8, lr=1e-3, temperature=0.1, device="auto", backend="local"),
        "paper": dict(budget=200.0, batch_sizes=[32, 64, 128, 256, 512], losses=["simclr", "dcl", "dclw"], seeds=3,
                      temperatures=[0.07, 0.1, 0.2, 0.5], small_batch=32, dataset="cifar10", dataset_size=0,
                      encoder="resnet18", width=64, lr=1e-3, temperature=0.1, device="auto", backend="local"),
    },
}

# Knobs whose values must come from a fixed set (each element, for list-valued knobs).
CHOICES = {"losses": ("simclr", "dcl", "dclw"), "backend": ("local", "ray", "torchrun")}


def resolve(notebook: str, preset: str, **knobs) -> dict:
    """The preset's parameters with every knob that is not None put in its place.

    Fails at once, naming the parameter and what is allowed, for an unknown preset or knob, a
    value outside its allowed set, a non-positive budget or seed count, or a batch size below 2.
    """
    choose("notebook", notebook, PRESETS)
    choose("preset", preset, PRESETS[notebook])
    params = dict(PRESETS[notebook][preset])
    for name, value in knobs.items():
        choose("parameter", name, params)
        if value is not None:
            params[name] = value
    for name, allowed in CHOICES.items():
        values = params.get(name, ())
        for value in [values] if isinstance(values, str) else values:
            choose(name, value, allowed)
    at_least("budget", params["budget"], 0)
    at_least("seeds", params["seeds"], 1)
    for b in params.get("batch_sizes", ()):
        at_least("batch_sizes", b, 2)
    for t in params.get("temperatures", ()):
        if not t > 0:
            raise ValueError(f"temperatures={params['temperatures']!r} is not allowed: each must be > 0")
    if "small_batch" in params:
        at_least("small_batch", params["small_batch"], 2)
    base_config(params).validate()   # dataset, encoder, width, lr, device ... checked by RunConfig
    return params


def base_config(params: dict) -> RunConfig:
    """The RunConfig that a notebook's grid varies, from resolved parameters."""
    return RunConfig(dataset=params["dataset"], dataset_size=params["dataset_size"], encoder=params["encoder"],
                     width=params["width"], epochs=float(params["budget"]), lr=params["lr"],
                     temperature=params["temperature"], device=params["device"])
