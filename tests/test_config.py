"""RunConfig and preset validation: bad values fail before any compute, naming the parameter."""
import dataclasses
import hashlib
import json

import pytest

from ssl_core.config import RunConfig
from ssl_core.preflight import valid
from ssl_core.presets import PRESETS, base_config, resolve


def test_default_config_is_valid_and_key_is_stable():
    cfg = RunConfig().validate()
    assert cfg.key() == RunConfig().key()
    assert len(cfg.key()) == 16


def test_key_depends_on_recipe_not_on_device():
    cfg = RunConfig()
    assert cfg.replace(seed=1).key() != cfg.key()
    assert cfg.replace(temperature=0.2).key() != cfg.key()
    assert cfg.replace(device="cpu").key() == cfg.key()
    assert cfg.replace(compile=True).key() == cfg.key()


def test_adding_a_field_with_a_default_keeps_every_key():
    """The results store is keyed by RunConfig.key(): a new knob must not orphan the stored runs."""
    cfg = RunConfig(method="byol", epochs=32.0, seed=3, width=8)
    grown = dataclasses.make_dataclass("Grown", [("new_knob", float, dataclasses.field(default=0.5))],
                                       bases=(RunConfig,), frozen=True)
    assert grown(method="byol", epochs=32.0, seed=3, width=8).key() == cfg.key()
    assert grown(method="byol", epochs=32.0, seed=3, width=8, new_knob=0.7).key() != cfg.key()


def test_defaults_are_pinned():
    """Fields at their default are left out of the key, so changing a default would silently change what
    every stored key means: add a field instead (or, deliberately, re-key the store and update this digest)."""
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    digest = hashlib.sha256(json.dumps(defaults, sort_keys=True).encode()).hexdigest()[:16]
    assert digest == "b52a88c42147de0b", "a RunConfig default changed: add a new field with the old behaviour instead"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().seed = 3


@pytest.mark.parametrize("change,message", [
    (dict(method="nope"), "method='nope' is not allowed: choose one of"),
    (dict(dataset="imagenet-9000"), "dataset='imagenet-9000' is not allowed"),
    (dict(encoder="resnet1000"), "encoder='resnet1000' is not allowed"),
    (dict(batch_size=1), "batch_size=1 is not allowed: must be >= 2"),
    (dict(epochs=-1.0), "epochs=-1.0 is not allowed: must be >= 0"),
    (dict(temperature=0.0), "temperature=0.0 is not allowed: must be > 0"),
    (dict(precision="fp8"), "precision='fp8' is not allowed"),
    (dict(device="tpu"), "device='tpu' is not allowed"),
    (dict(batch_size="64"), "batch_size='64' has the wrong type: expected an integer"),
    (dict(crop_min_scale=0.0), "crop_min_scale=0.0 is not allowed"),
])
def test_bad_values_name_the_parameter(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        valid("cfg", RunConfig(**change))


@pytest.mark.parametrize("knobs,message", [
    (dict(preset="fast"), "preset='fast' is not allowed: choose one of"),
    (dict(losses=["simclr", "triplet"]), "losses='triplet' is not allowed"),
    (dict(batch_sizes=[1, 16]), "batch_sizes=1 is not allowed: must be >= 2"),
    (dict(budget=-3), "budget=-3.0 is not allowed: must be >= 0"),
    (dict(dataset="nowhere"), "dataset='nowhere' is not allowed"),
    (dict(seeds=0), "seeds=0 is not allowed"),
    (dict(colour="red"), "colour='red' is not a parameter of 04_dcl_batch_size: did you mean"),
    (dict(compile="yes"), "compile='yes' has the wrong type: expected True or False"),
])
def test_notebook_parameters_fail_fast(knobs, message):
    preset = knobs.pop("preset", "smoke")
    with pytest.raises(ValueError, match=message):
        resolve("04_dcl_batch_size", preset, **knobs)


def test_preset_knobs_override_only_when_set():
    p = resolve("04_dcl_batch_size", "smoke", budget=2, seeds=None)
    assert p["budget"] == 2 and p["seeds"] == resolve("04_dcl_batch_size", "smoke")["seeds"]


@pytest.mark.parametrize("notebook", sorted(PRESETS))
def test_every_notebook_compiles_its_runs_only_when_asked(notebook):
    assert base_config(resolve(notebook, "smoke")).compile is False
    assert base_config(resolve(notebook, "smoke", compile=True)).compile is True


def test_a_run_with_its_own_knobs_writes_its_own_folder(tmp_path, monkeypatch):
    """The mission's `-p budget 100` must not overwrite the committed reference figures (figures/)."""
    from ssl_core.presets import resolve_notebook
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")                   # as papermill --cwd notebooks and Lab run
    reference = resolve_notebook("02_curation_gap", {"preset": "default"})["output_dir"]
    assert reference == tmp_path / "figures"
    assert resolve_notebook("02_curation_gap", {"preset": "smoke"})["output_dir"] == tmp_path / "figures" / "smoke"
    assert resolve_notebook("02_curation_gap", {"preset": "default", "budget": 64.0})["output_dir"] == reference
    custom = resolve_notebook("02_curation_gap", {"preset": "default", "budget": 100, "seeds": 5})["output_dir"]
    assert custom == tmp_path / "figures" / "custom" / "02_curation_gap-default-budget100.0"
    saved = json.loads((custom / "params.json").read_text())
    assert saved["overrides"] == {"budget": 100.0} and saved["preset"] == "default" and saved["seeds"] == 5
    listed = resolve_notebook("04_dcl_batch_size", {"preset": "smoke", "batch_sizes": "[8, 32]"})["output_dir"]
    assert listed.name == "04_dcl_batch_size-smoke-batch_sizes8,32"
