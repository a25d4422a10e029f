"""Every notebook's presets, and `resolve()`: preset values overridden by the knobs a user set, each as the type
its notebook's parameters cell declares and within its bounds (`resolve_notebook()`: the knobs a kernel holds).

smoke   a minute or so per notebook on an idle 2-core CPU (48-94 s cold, in make smoke); every code path (CI, nbval)
quick   the embedded data at small budgets, minutes per notebook on a 2-core CPU: a first look, unconverged
default the embedded data at budgets where the compared methods have stopped learning, 5 seeds: the evidence
        behind the committed figures (hours of CPU, computed once by `make evidence` into results/)
paper   real datasets on a GPU, closer to the papers' protocols
"""
from __future__ import annotations

import ast
import difflib
import json
import re
from pathlib import Path
from types import ModuleType

import yaml

from ssl_core.checks import choose, positive, typed, within
from ssl_core.config import RANGES, RunConfig
from ssl_core.data.suite import SUITE
from ssl_core.methods import METHODS
from ssl_core.methods.dnc import DNC_ABLATIONS
from ssl_core.plots import outputs_dir, save_params
from ssl_core.preflight import valid

# The recipe of every embedded-world preset, chosen on SimCLR and supervised learning curves on `curated` alone
# (scripts/regime.py, one seed, 32 epochs), before any claim's effect was looked at. From the recipe before it
# (width 8, lr 1e-3, colour jitter 0.4 with 20% grey views, backgrounds at 0.6 contrast; SimCLR linear 45.4%):
# no grey views and jitter 0.2 48.4% (colour is part of a class), lr 3e-3 50.2%; probed per factor SimCLR knew
# colour (99%) and pattern (95%) but not shape (37%): it told images apart by their backgrounds. Backgrounds at
# 0.2 contrast (ssl_core.data.render.CURATED_CONTRAST) 72.4%, supervised 95.3%; width 16 added ~1.4 points at 1.6x
# the time (66.9% against 65.5% at 0.3 contrast), so the width stays 8.
RECIPE = dict(encoder="resnet10", width=8, lr=3e-3)
VIEWS = dict(jitter=0.2, gray_p=0.0)     # RunConfig fields of the recipe that are not notebook knobs
PRESETS: dict[str, dict[str, dict]] = {
    "01_small_budget": {
        "smoke": dict(budget=1.0, fractions=[1.0], seeds=2, tasks=["suite/digits", "suite/colour"], task_images=500,
                      corruptions=["gaussian_noise", "contrast"], severities=[1, 5], robustness_images=200, eval_size=500,
                      corruption_dataset="suite/colour", dataset="curated", dataset_size=256, encoder="resnet10",
                      width=8, batch_size=64, lr=1e-3, temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=4.0, fractions=[0.25, 0.5, 1.0], seeds=3,
                        tasks=["suite/concepts", "suite/digits", "suite/textures", "suite/count", "suite/colour",
                               "suite/position", "suite/shape_variants", "suite/orientation"], task_images=1000,
                        corruptions=["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
                                     "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "fog", "brightness",
                                     "contrast", "saturate", "pixelate", "jpeg_compression", "elastic_transform"],
                        severities=[1, 2, 3, 4, 5], robustness_images=400, eval_size=0, corruption_dataset="curated",
                        dataset="curated", dataset_size=0, encoder="resnet10", width=RECIPE["width"], batch_size=64, lr=RECIPE["lr"],
                        temperature=0.1, device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=100.0, fractions=[0.01, 0.03, 0.1, 0.3, 1.0], seeds=3,
                      tasks=["cifar100", "cifar10", "stl10", "svhn", "dtd", "flowers102", "oxford_pets", "caltech101"],
                      task_images=0,
                      corruptions=["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                                   "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                                   "elastic_transform", "pixelate", "jpeg_compression"],
                      severities=[1, 2, 3, 4, 5], robustness_images=0, eval_size=0, corruption_dataset="cifar10c",
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
                      temperatures=[0.1, 0.5], small_batch=16, eval_size=500, dataset="curated", dataset_size=256,
                      encoder="resnet10", width=8, lr=1e-3, temperature=0.1,
                      device="auto", compile=False, backend="local", parallel=0),
        "quick": dict(budget=2.0, batch_sizes=[16, 64, 256], losses=["simclr", "dcl", "dclw"], seeds=3,
                        temperatures=[0.05, 0.1, 0.5], small_batch=16, eval_size=0, dataset="curated", dataset_size=0,
                        encoder="resnet10", width=RECIPE["width"], lr=RECIPE["lr"], temperature=0.1,
                        device="auto", compile=False, backend="local", parallel=0),
        "paper": dict(budget=200.0, batch_sizes=[32, 64, 128, 256, 512], losses=["simclr", "dcl", "dclw"], seeds=3,
                      temperatures=[0.07, 0.1, 0.2, 0.5], small_batch=32, eval_size=0, dataset="cifar10", dataset_size=0,
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
# stopped learning (each notebook's regime check says whether they have) and with 5 seeds per effect. Claim 5
# goes to 128 epochs: at 64 SimCLR still gained 4.3 points linear over its last doubling (75.3%). Claim 1 goes to
# 256, its budget axis still starting at 4 epochs: at 128 SimCLR still gained 5.5 points (80.7%).
EVIDENCE = {
    "01_small_budget": dict(budget=256.0, fractions=[1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0], seeds=5),
    "02_curation_gap": dict(budget=64.0, seeds=5),
    "03_flop_budget": dict(budget=4.0, levels=[0.5, 1.0], seeds=5),
    "04_dcl_batch_size": dict(budget=64.0, seeds=5),
    "05_mlp_projector": dict(budget=128.0, seeds=5),
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
# Knobs that set a RunConfig field (each element, for list-valued knobs): the field's range (RANGES) applies.
FIELD_KNOBS = {"budget": "epochs", "batch_size": "batch_size", "batch_sizes": "batch_size", "small_batch": "batch_size",
               "dnc_clusters": "dnc_clusters"}
# Range of each integer knob: seeds per setting (`-p seeds 100000000` must not build a grid that fills the
# memory), else COUNTS, for any other count of images, runs or clusters.
INT_RANGES = {"seeds": (1, 1000), "ablation_seeds": (1, 1000)}
COUNTS = (0, RANGES["dataset_size"][1])
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TYPES = {"str": str, "int": int, "float": float, "bool": bool}   # of a knob, or of each element of a list[...] knob
IPYTHON_NAMES = ("In", "Out")   # IPython's history in a kernel's globals (its get_ipython, exit, quit are callables)


def resolve(notebook: str, preset: str, **knobs) -> dict:
    """The preset's parameters with every knob that is not None put in its place, as its declared type
    (parameter_types; see knob_value for the forms a value may take).

    Fails at once, naming the parameter, the value and what is allowed, for an unknown preset or knob (naming
    the closest known one), a value of the wrong type, or outside its allowed set or range.
    """
    choose("notebook", notebook, PRESETS)
    choose("preset", preset, PRESETS[notebook])
    params, types = dict(PRESETS[notebook][preset]), parameter_types(notebook)
    overrides = {}
    for name, value in knobs.items():
        if name not in params:
            known = ["preset", *params]
            closest = difflib.get_close_matches(name, known, n=1, cutoff=0)[0]
            raise ValueError(f"{name}={value!r} is not a parameter of {notebook}: did you mean {closest}? "
                             f"(its parameters: {', '.join(known)})")
        if value is not None:
            params[name] = knob_value(name, value, types[name])
            if params[name] != PRESETS[notebook][preset][name]:
                overrides[name] = params[name]
    for name, allowed in {**CHOICES, **{knob: tuple(METHODS) for knob in METHOD_KNOBS}}.items():
        values = params.get(name, ())
        for value in [values] if isinstance(values, str) else values:
            choose(name, value, allowed)
    for name, field in FIELD_KNOBS.items():
        values = params.get(name, [])
        for value in values if isinstance(values, list) else [values]:
            within(name, value, *RANGES[field])
    for name, kind in types.items():
        if kind == "int":
            within(name, params[name], *INT_RANGES.get(name, COUNTS))
    for t in params.get("temperatures", ()):
        positive("temperatures", t)
    params["views"] = {} if preset == "paper" else dict(VIEWS)   # real data: SimCLR's own views
    valid("config", base_config(params))   # dataset, encoder, width, lr, device ... checked as a RunConfig
    params["output_dir"] = outputs_dir(notebook, preset, overrides)
    if overrides:
        save_params(params["output_dir"], dict(params, preset=preset, overrides=overrides))
    print(f"outputs (figures, verdict): {params['output_dir']}")
    return params


def resolve_notebook(notebook: str, namespace: dict) -> dict:
    """resolve() with the parameters a notebook's kernel holds: `namespace` is its globals().

    Every user-level name there is taken for a parameter, except private names, modules, callables, IPython's
    history and the names the notebook's own cells bind (imports, results of later cells: bound_names). So a
    name papermill injected that the notebook does not have (a misspelt `-p bugdet 3`) fails here, before any
    compute, naming the closest known parameter.
    """
    skip = bound_names(notebook) - set(parameter_types(notebook))
    knobs = {name: value for name, value in namespace.items()
             if not (name.startswith("_") or name in IPYTHON_NAMES or name in skip
                     or callable(value) or isinstance(value, ModuleType))}
    return resolve(notebook, knobs.pop("preset", None), **knobs)


def knob_value(name: str, value, kind: str):
    """`value` of knob `name` as its declared `kind`: str, int, float (finite; an int is taken), bool, or
    list[one of them]. A list knob also takes papermill's string form (JSON or YAML: '[8, 32, 128]', '[simclr,
    dcl]'; read as data, never run) and one value for a list of one; it must hold at least one value."""
    if not kind.startswith("list["):
        return typed(name, value, TYPES[kind])
    items = value
    if isinstance(value, str):
        try:
            items = json.loads(value)
        except ValueError:
            try:
                items = yaml.safe_load(value)
            except yaml.YAMLError:
                items = None                                     # no list in either notation: the wrong type
    if isinstance(items, (str, int, float, bool)):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{name}={value!r} has the wrong type: expected a list ({kind}), e.g. '[a, b]', "
                         f"or one value")
    if not items:
        raise ValueError(f"{name}={value!r} is not allowed: give at least one value")
    return [typed(name, item, TYPES[kind[len("list["):-1]]) for item in items]


def code_cells(notebook: str) -> list[tuple[bool, str]]:
    """(whether it is the parameters cell, its source) of each code cell of notebooks/<notebook>.ipynb."""
    cells = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]
    return [("parameters" in cell["metadata"].get("tags", []), "".join(cell["source"]))
            for cell in cells if cell["cell_type"] == "code"]


def parameter_types(notebook: str) -> dict[str, str]:
    """{name: type} of the notebook's parameters, from the `# type: ...` comment of each line of its
    parameters cell: the one place a knob's type is declared (papermill --help-notebook shows it too)."""
    source = next(source for is_parameters, source in code_cells(notebook) if is_parameters)
    return dict(re.findall(r"^(\w+)\s*=.*?#\s*type:\s*(\S+)", source, flags=re.MULTILINE))


def bound_names(notebook: str) -> set[str]:
    """The names the notebook's code cells other than its parameters cell bind (assign, import, loop over)."""
    from IPython.core.inputtransformer2 import TransformerManager   # cells may hold %magics
    names = set()
    for is_parameters, source in code_cells(notebook):
        if not is_parameters:
            for node in ast.walk(ast.parse(TransformerManager().transform_cell(source))):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
                elif isinstance(node, ast.alias):
                    names.add((node.asname or node.name).split(".")[0])
    return names


def base_config(params: dict) -> RunConfig:
    """The RunConfig that a notebook's grid varies, from resolved parameters (`views`: the recipe's)."""
    return RunConfig(dataset=params["dataset"], dataset_size=params["dataset_size"], encoder=params["encoder"],
                     width=params["width"], epochs=float(params["budget"]), lr=params["lr"],
                     temperature=params["temperature"], device=params["device"], compile=params["compile"],
                     **params["views"])
