"""Parameters as typed and bounded (issue 29): each bad input fails before any compute with a ValueError naming
the parameter, the value and what is allowed; papermill's string forms of list knobs are read as data."""
import ast
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from ssl_core.config import RunConfig
from ssl_core.data import load_dataset
from ssl_core.presets import PRESETS, code_cells, knob_value, parameter_types, resolve, resolve_notebook
from ssl_core.grid import plan, run_grid
from ssl_core.runs import pretrain, run_or_load

ROOT = Path(__file__).resolve().parents[1]
NB = "04_dcl_batch_size"
TINY = RunConfig(dataset_size=256, encoder="resnet10", width=8, batch_size=32, epochs=1.0, device="cpu")
INF, NAN = float("inf"), float("nan")


def kernel(notebook=NB, **injected):
    """resolve_notebook on the globals a kernel holds once papermill injected `injected` (its -p values)."""
    return resolve_notebook(notebook, {"preset": "smoke", **injected})


def config(**changes):
    return RunConfig(**changes).validate()


# case id: (call, expected) -- expected: a str the ValueError's message contains, else the value the call returns
CASES = {
    # --- the cases ------------------------------------------------------------------------------------
    "p list string": (lambda: kernel(batch_sizes="[8, 32, 128]")["batch_sizes"], [8, 32, 128]),
    "p one name for a list": (lambda: kernel(losses="simclr")["losses"], ["simclr"]),
    "p one number for a list": (lambda: kernel(batch_sizes=16)["batch_sizes"], [16]),
    "p budget abc": (lambda: kernel(budget="abc"), "budget='abc' has the wrong type: expected a number (float)"),
    "p misspelt name": (lambda: kernel(bugdet=3),
                        "bugdet=3 is not a parameter of 04_dcl_batch_size: did you mean budget?"),
    "p width 100000": (lambda: kernel(width=100000), "width=100000 is not allowed: must be <= 1024"),
    "lr inf": (lambda: config(lr=INF), "lr=inf is not allowed: must be a finite number"),
    "epochs inf": (lambda: config(epochs=INF), "epochs=inf is not allowed: must be a finite number"),
    "image_size bound": (lambda: config(image_size=4096), "image_size=4096 is not allowed: must be <= 1024"),
    "proj_dim bound": (lambda: config(proj_dim=10**6), "proj_dim=1000000 is not allowed: must be <= 65536"),
    "evals a string": (lambda: run_or_load(TINY, evals="knn"), "evals='knn' has the wrong type: expected a list"),
    "configs of names": (lambda: run_grid(["simclr"]), "configs[0]='simclr' has the wrong type: expected a RunConfig"),
    "size -5": (lambda: load_dataset("curated", "train", size=-5), "size=-5 is not allowed: must be >= 0"),
    "dnc clusters": (lambda: run_grid([TINY.replace(method="dnc", dnc_clusters=200)]),
                     "dnc_clusters=200 is not allowed with 256 images and batch_size=32"),
    "batch over data": (lambda: pretrain(TINY.replace(batch_size=1024), progress=False),
                        "batch_size=1024 is not allowed: the pretraining set has only 256 images"),
    "memory": (lambda: plan([TINY.replace(encoder="resnet18", width=1024, batch_size=2)]),
               "width=1024: the run would need ~46 GB, this machine has 24 GB"),
    # --- more ---------------------------------------------------------------------------------------------------
    "temperature 0 in a list": (lambda: kernel(temperatures="[0, 0.5]"), "temperatures=0.0 is not allowed: must be > 0"),
    "seeds 0": (lambda: kernel(seeds=0), "seeds=0 is not allowed: must be >= 1"),
    "seeds too many": (lambda: kernel(seeds=10**9), "seeds=1000000000 is not allowed: must be <= 1000"),
    "empty list": (lambda: kernel(batch_sizes="[]"), "batch_sizes='[]' is not allowed: give at least one value"),
    "dict for a list": (lambda: kernel(batch_sizes={"a": 1}), "batch_sizes={'a': 1} has the wrong type: expected a list"),
    "unclosed list": (lambda: kernel(batch_sizes="[8, 32"), "batch_sizes='[8, 32' has the wrong type: expected a list"),
    "bad element": (lambda: kernel(batch_sizes="[8, x]"), "batch_sizes='x' has the wrong type: expected an integer"),
    "bool for an int": (lambda: kernel(batch_sizes=[True]), "batch_sizes=True has the wrong type: expected an integer"),
    "lr nan": (lambda: kernel(lr=NAN), "lr=nan is not allowed: must be a finite number"),
    "budget int is a float": (lambda: kernel(budget=3)["budget"], 3.0),
    "compile true": (lambda: kernel(compile="true"), "compile='true' has the wrong type: expected True or False (bool)"),
    "yaml list of names": (lambda: kernel(losses="- simclr\n- dclw")["losses"], ["simclr", "dclw"]),
    "json floats": (lambda: kernel(temperatures="[1e-3, 0.1]")["temperatures"], [0.001, 0.1]),
    "unknown method": (lambda: kernel("05_mlp_projector", methods="[simclr, simclrr]"), "methods='simclrr' is not allowed"),
    "parallel -1": (lambda: kernel(parallel=-1), "parallel=-1 is not allowed: must be >= 0"),
    "device cuda:x": (lambda: kernel(device="cuda:x"), "device='cuda:x' is not allowed"),
    "preset typo": (lambda: kernel(preset="smok"), "preset='smok' is not allowed: choose one of"),
    "kernel names that are no parameters": (
        lambda: kernel(In=[], Out={}, _i="", math=math, plan=plan, grid=[TINY], batch_sizes=None) == resolve(NB, "smoke"),
        True),
    "eval_size -1": (lambda: run_or_load(TINY, eval_size=-1), "eval_size=-1 is not allowed: must be >= 0"),
    "eval_dataset typo": (lambda: run_or_load(TINY, eval_dataset="curatd"), "eval_dataset='curatd' is not allowed"),
    "unknown eval": (lambda: run_grid([TINY], evals=["knn", "knnn"]), "evals='knnn' is not allowed"),
    "one config for a list": (lambda: run_grid(TINY), "has the wrong type: expected a list of RunConfig"),
    "plan parallel -1": (lambda: plan([TINY], parallel=-1), "parallel=-1 is not allowed: must be >= 0"),
    "split": (lambda: load_dataset("curated", "val"), "split='val' is not allowed: choose one of ['test', 'train']"),
    "size a float": (lambda: load_dataset("curated", "train", size=5.0), "size=5.0 has the wrong type: expected an integer"),
    "bool batch": (lambda: config(batch_size=True), "batch_size=True has the wrong type: expected an integer (int)"),
}


@pytest.mark.parametrize("call,expected", CASES.values(), ids=CASES.keys())
def test_parameters_are_typed_and_bounded_before_any_compute(call, expected, private_cache, monkeypatch):
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(total=24e9))   # the same machine for all
    if isinstance(expected, str):
        with pytest.raises(ValueError) as error:
            call()
        assert expected in str(error.value)
    else:
        assert call() == expected
    assert not (private_cache / "runs").exists(), "a refused or resolved call wrote to the run cache"


@pytest.mark.parametrize("notebook", sorted(PRESETS))
def test_parameters_cell_declares_every_preset_knob_with_its_type(notebook):
    types = parameter_types(notebook)
    for preset, values in PRESETS[notebook].items():
        assert set(types) == {"preset", *values}, f"{notebook} {preset}: parameters cell and preset differ"
        for name, value in values.items():
            assert knob_value(name, value, types[name]) == value, f"{notebook} {preset}: {name} is no {types[name]}"


@pytest.mark.parametrize("notebook", sorted(PRESETS))
def test_setup_cell_resolves_the_kernels_parameters_first(notebook):
    """First, so that no import of the cell can shadow a parameter (02 imports a function named dnc_clusters)."""
    cells = code_cells(notebook)
    setup = cells[[is_parameters for is_parameters, _ in cells].index(True) + 1][1]
    assert ast.unparse(ast.parse(setup).body[1]) == f"P = resolve_notebook({notebook!r}, globals())"


def test_papermill_fails_fast_on_a_misspelt_parameter(tmp_path):
    """A real papermill run with `-p bugdet 3` stops in the setup cell, before any training: cheap by design."""
    cache = tmp_path / "cache"
    env = {**os.environ, "SSL_CORE_CACHE": str(cache), "SSL_CORE_RESULTS": str(tmp_path / "results"),
           "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(ROOT / "notebooks"), "-p", "preset", "smoke",
                           "-p", "bugdet", "3", str(ROOT / "notebooks" / f"{NB}.ipynb"), str(tmp_path / "out.ipynb")],
                          env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode != 0
    assert "bugdet=3 is not a parameter of 04_dcl_batch_size: did you mean budget?" in done.stdout + done.stderr
    assert not (cache / "runs").exists()
    assert seconds < 60, f"took {seconds:.0f} s"


@pytest.mark.parametrize("notebook", sorted(PRESETS))
def test_first_markdown_cell_shows_what_each_preset_sets(notebook):
    """What a knob left at None resolves to, per preset, is readable in the notebook (scripts/preset_tables.py)."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "scripts" / "preset_tables.py"
    spec = importlib.util.spec_from_file_location("preset_tables", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    _, cell = tables.first_markdown(notebook)
    source = "".join(cell["source"])
    assert f"{tables.BEGIN}\n{tables.table(notebook)}\n{tables.END}" in source, \
        f"{notebook}: run python scripts/preset_tables.py --write"
    assert "| `budget` |" in source
