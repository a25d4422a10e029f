"""Every notebook's presets, and `resolve()`: preset values overridden by the knobs a user set.

smoke   seconds per notebook on a 2-core CPU; exercises every code path (CI runs it under nbval)
quick   the embedded data at small budgets, minutes per notebook on a 2-core CPU: a first look, unconverged
default the embedded data at budgets where the compared methods have stopped learning, 5 seeds: the evidence
        behind the committed figures (hours of CPU, computed once by `make evidence` into results/)
paper   real datasets on a GPU, closer to the papers' protocols
"""
from __future__ import annotations

from ssl_core.config import RunConfig, at_least, choose
from ssl_core.data.suite import SUITE
from ssl_core.methods.dnc import DNC_ABLATIONS

# The recipe of every embedded-world preset, chosen on SimCLR and supervised learning curves on `curated` alone
# (scripts/regime.py, one seed, 32 epochs), before any claim's effect was looked at. From the recipe before it
# (width 8, lr 1e-3, colour jitter 0.4 with 20% grey views, backgrounds at 0.6 contrast; SimCLR linear 45.4%):
# no grey views and jitter 0.2 48.4% (colour is part of a class), lr 3e-3 50.2%; probed per factor SimCLR knew
# colour (99%) and pattern (95%) but not shape (37%): it told images apart by their backgrounds. Backgrounds at
# 0.2 contrast (ssl_core.data.world.CURATED_CONTRAST) 72.4%, supervised 95.3%; width 16 added ~1.4 points at 1.6x
# the time (66.9% against 65.5% at 0.3 contrast), so the width stays 8.
RECIPE = dict(encoder="resnet10", width=8, lr=3e-3)
VIEWS = dict(jitter=0.2, gray_p=0.0)     # RunConfig fields of the recipe that are not notebook knobs
PRESETS: dict[str, dict[str, dict]] = {
    "01_small_budget": {
        "smoke": dict(budget=1.0, fractions=[1.0], seeds=2, tasks=["suite/digits", "suite/colour"], task_images=500,
                      corruptions=["gaussian_noise", "contrast"], severities=[1, 5], robustness_images=200,
                      corruption_dataset="suite/colour", dataset="curated", dataset_size=256, encoder="resnet10",
                      width=8, batch_size=64, lr=1e-3, temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=4.0, fractions=[0.25, 0.5, 1.0], seeds=3,
                        tasks=["suite/concepts", "suite/digits", "suite/textures", "suite/count", "suite/colour",
                               "suite/position", "suite/shape_variants", "suite/orientation"], task_images=1000,
                        corruptions=["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
                                     "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "fog", "brightness",
                                     "contrast", "saturate", "pixelate", "jpeg_compression", "elastic_transform"],
                        severities=[1, 2, 3, 4, 5], robustness_images=400, corruption_dataset="curated",
                        dataset="curated", dataset_size=0, encoder="resnet10", width=RECIPE["width"], batch_size=64, lr=RECIPE["lr"],
                        temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=100.0, fractions=[0.01, 0.03, 0.1, 0.3, 1.0], seeds=3,
                      tasks=["cifar100", "cifar10", "stl10", "svhn", "dtd", "flowers102", "oxford_pets", "caltech101"],
                      task_images=0,
                      corruptions=["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                                   "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                                   "elastic_transform", "pixelate", "jpeg_compression"],
                      severities=[1, 2, 3, 4, 5], robustness_images=0, corruption_dataset="cifar10c",
                      dataset="cifar100", dataset_size=0, encoder="resnet18", width=64, batch_size=256, lr=1e-3,
                      temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
    },
    "02_curation_gap": {
        "smoke": dict(budget=1.0, methods=["simclr", "moclr"], seeds=2, ablations=["random_partition"],
                      ablation_seeds=1, dnc_clusters=2, suite_tasks=["digits"], eval_size=500, dataset="curated",
                      uncurated="uncurated", dataset_size=256, encoder="resnet10", width=8, batch_size=32, lr=1e-3,
                      temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=3.0, methods=["simclr", "moclr", "byol"], seeds=3, ablations=list(DNC_ABLATIONS),
                        ablation_seeds=2, dnc_clusters=5, suite_tasks=["concepts", "digits", "textures", "count"],
                        eval_size=0, dataset="curated", uncurated="uncurated", dataset_size=0, encoder="resnet10",
                        width=RECIPE["width"], batch_size=64, lr=RECIPE["lr"], temperature=0.1,
                        device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=100.0, methods=["simclr", "moclr", "byol"], seeds=3, ablations=list(DNC_ABLATIONS),
                      ablation_seeds=1, dnc_clusters=5, suite_tasks=list(SUITE), eval_size=0, dataset="cifar100",
                      uncurated="stl10_unlabeled", dataset_size=50000, encoder="resnet18", width=64, batch_size=256,
                      lr=1e-3, temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
    },
    "03_flop_budget": {
        "smoke": dict(budget=1.0, levels=[0.5, 1.0], methods=["clip", "dino", "simclr", "byol", "mae", "supervised"],
                      datasets=["curated", "uncurated"], seeds=2, dataset="curated", dataset_size=64,
                      seg_dataset="scenes_shapes", batch_size=16, eval_train_size=64, eval_test_size=64,
                      encoder="vit_mini_p8", width=8, lr=1e-3, temperature=0.1, device_kind="cpu-2core",
                      country="WLD", device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=0.5, levels=[0.25, 1.0], methods=["clip", "dino", "simclr", "byol", "mae", "supervised"],
                        datasets=["curated", "uncurated", "uncurated_large", "scenes"], seeds=2, dataset="curated",
                        dataset_size=0, seg_dataset="scenes_shapes", batch_size=32, eval_train_size=1000,
                        eval_test_size=500, encoder="vit_mini", width=RECIPE["width"], lr=RECIPE["lr"], temperature=0.1,
                        device_kind="cpu-2core", country="WLD", device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=30.0, levels=[0.1, 0.3, 1.0], methods=["clip", "dino", "simclr", "byol", "mae", "supervised"],
                      datasets=["curated", "uncurated", "uncurated_large", "scenes"], seeds=3, dataset="curated",
                      dataset_size=0, seg_dataset="scenes_shapes", batch_size=256, eval_train_size=5000,
                      eval_test_size=2000, encoder="vit_tiny", width=8, lr=1e-3, temperature=0.1, device_kind="a100",
                      country="WLD", device="auto", compile=False, backend="local", parallel=0),
    },
    "04_dcl_batch_size": {
        "smoke": dict(budget=1.0, batch_sizes=[16, 64], losses=["simclr", "dcl", "dclw"], seeds=2,
                      temperatures=[0.1, 0.5], small_batch=16, dataset="curated", dataset_size=256,
                      encoder="resnet10", width=8, lr=1e-3, temperature=0.1,
                      device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=2.0, batch_sizes=[16, 64, 256], losses=["simclr", "dcl", "dclw"], seeds=3,
                        temperatures=[0.05, 0.1, 0.5], small_batch=16, dataset="curated", dataset_size=0,
                        encoder="resnet10", width=RECIPE["width"], lr=RECIPE["lr"], temperature=0.1,
                        device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=200.0, batch_sizes=[32, 64, 128, 256, 512], losses=["simclr", "dcl", "dclw"], seeds=3,
                      temperatures=[0.07, 0.1, 0.2, 0.5], small_batch=32, dataset="cifar10", dataset_size=0,
                      encoder="resnet18", width=64, lr=1e-3, temperature=0.1,
                      device="auto", compile=False, backend="local", parallel=0),
    },
    "05_mlp_projector": {
        "smoke": dict(budget=1.0, methods=["supervised", "sl_mlp"], seeds=2, batch_size=64, suite_tasks=["digits"],
                      metric_images=256, eval_size=500, dataset="curated", dataset_size=256, encoder="resnet10",
                      width=8, lr=1e-3, temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=4.0, methods=["supervised", "sl_mlp", "simclr", "byol"], seeds=3, batch_size=64,
                        suite_tasks=list(SUITE), metric_images=2000, eval_size=0, dataset="curated", dataset_size=0,
                        encoder="resnet10", width=RECIPE["width"], lr=RECIPE["lr"], temperature=0.1,
                        device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=100.0, methods=["supervised", "sl_mlp", "simclr", "byol"], seeds=3, batch_size=256,
                      suite_tasks=list(SUITE), metric_images=10000, eval_size=0, dataset="cifar100", dataset_size=0,
                      encoder="resnet18", width=64, lr=1e-3, temperature=0.1,
                      device="auto", compile=False, backend="local", parallel=0),
    },
}

# The default preset is the evidence: the quick preset's design at budgets where the compared methods have
# stopped learning (each notebook's regime check says whether they have) and with 5 seeds per effect.
EVIDENCE = {
    "01_small_budget": dict(budget=64.0, fractions=[1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0], seeds=5),
    "02_curation_gap": dict(budget=64.0, seeds=5),
    "03_flop_budget": dict(budget=4.0, levels=[0.5, 1.0], seeds=5),
    "04_dcl_batch_size": dict(budget=64.0, seeds=5),
    "05_mlp_projector": dict(budget=64.0, seeds=5),
}
for _notebook, _changes in EVIDENCE.items():
    _presets = PRESETS[_notebook]
    PRESETS[_notebook] = {"smoke": _presets["smoke"], "quick": _presets["quick"],
                          "default": dict(_presets["quick"], **_changes), "paper": _presets["paper"]}

# Knobs whose values must come from a fixed set (each element, for list-valued knobs).
CHOICES = {"losses": ("simclr", "dcl", "dclw"), "backend": ("local", "ray", "torchrun"),
           "ablations": tuple(DNC_ABLATIONS), "suite_tasks": tuple(SUITE)}
# Knobs naming pretraining methods (each element must be a key of ssl_core.methods.METHODS).
METHOD_KNOBS = ("methods",)


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
    from ssl_core.methods import METHODS
    for name, allowed in {**CHOICES, **{knob: tuple(METHODS) for knob in METHOD_KNOBS}}.items():
        values = params.get(name, ())
        for value in [values] if isinstance(values, str) else values:
            choose(name, value, allowed)
    at_least("budget", params["budget"], 0)
    for name in ("seeds", "ablation_seeds"):
        if name in params:
            at_least(name, params[name], 1)
    for b in params.get("batch_sizes", ()):
        at_least("batch_sizes", b, 2)
    for t in params.get("temperatures", ()):
        if not t > 0:
            raise ValueError(f"temperatures={params['temperatures']!r} is not allowed: each must be > 0")
    if "small_batch" in params:
        at_least("small_batch", params["small_batch"], 2)
    at_least("parallel", params["parallel"], 0)
    params["views"] = {} if preset == "paper" else dict(VIEWS)   # real data: SimCLR's own views
    base_config(params).validate()   # dataset, encoder, width, lr, device ... checked by RunConfig
    return params


def base_config(params: dict) -> RunConfig:
    """The RunConfig that a notebook's grid varies, from resolved parameters (`views`: the recipe's)."""
    return RunConfig(dataset=params["dataset"], dataset_size=params["dataset_size"], encoder=params["encoder"],
                     width=params["width"], epochs=float(params["budget"]), lr=params["lr"],
                     temperature=params["temperature"], device=params["device"], compile=params["compile"],
                     **params["views"])
