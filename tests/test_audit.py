"""make audit: a stored run recomputed from nothing reproduces every stored metric, and a tampered one is caught."""
import json

import torch

from ssl_core import audit, store
from ssl_core.budget import probe_rows
from ssl_core.config import RunConfig
from ssl_core.data import DATASETS
from ssl_core.runs import cpu_model, eval_id, run_or_load

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet10", width=8,
                 epochs=1.0, batch_size=64, device="cpu")


def test_audit_reproduces_a_stored_run_and_catches_a_changed_metric(private_cache, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    run_or_load(TINY, ("knn",), "suite/digits", progress=False, eval_size=200)     # on a whole test split
    probe_rows(TINY, "knn", "curated", 200, 100)                                   # a probe on subsets (claim 3's)
    run_or_load(TINY.replace(epochs=0.0), ("knn",), "suite/digits", progress=False, eval_size=200)  # random init
    monkeypatch.setenv("SSL_CORE_STORE", "read")                                   # has nothing to retrain
    assert audit.main(["--cheapest"]) == 0
    out = capsys.readouterr().out
    assert "same machine kind, 2 metrics recomputed" in out and "every stored metric reproduced" in out
    path = store.entry_path(TINY.key())
    entry = json.loads(path.read_text())
    entry["rows"]["knn@suite_digits-200"][0]["value"] += 0.01
    entry["rows"]["knn@curated-200-100"][0]["value"] += 0.01
    path.write_text(json.dumps(entry))
    assert audit.main(["--runs", "5", "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert "knn@suite_digits-200 knn_acc" in out and "knn@curated-200-100 knn_acc" in out
    assert json.loads(path.read_text()) == entry                          # the audit never writes the store


def test_a_record_naming_only_the_cpu_model_name_is_judged_as_another_machine_kind(private_cache, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    probe_rows(TINY, "knn", "curated", 200, 100)                                   # trains the run, then probes it
    path = store.entry_path(TINY.key())
    entry = json.loads(path.read_text())
    assert entry["record"]["cpu"] == cpu_model() and torch.backends.cpu.get_cpu_capability() in cpu_model()
    entry["record"]["cpu"] = cpu_model().split(" (")[0]                   # as records before 2026-12-06 named it
    path.write_text(json.dumps(entry))
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    assert audit.main(["--cheapest"]) == 0
    assert "other machine kind, 1 metrics recomputed" in capsys.readouterr().out


def test_rows_of_earlier_weights_are_judged_within_the_tolerance(private_cache, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    probe_rows(TINY, "knn", "curated", 200, 100)                                   # trains the run, then probes it
    path = store.entry_path(TINY.key())
    entry = json.loads(path.read_text())
    entry["rows"]["knn@curated-200-100"][0]["value"] += 0.01             # one point: another training's value
    path.write_text(json.dumps(entry))
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    assert audit.main(["--cheapest"]) == 1                               # same kind, same weights: must be identical
    entry["earlier_weights"] = {"knn@curated-200-100": "0" * 64}         # as store.add names them after a retrain
    path.write_text(json.dumps(entry))
    assert audit.main(["--cheapest"]) == 0
    entry["rows"]["knn@curated-200-100"][0]["value"] += audit.TOLERANCE / 100
    path.write_text(json.dumps(entry))
    assert audit.main(["--cheapest"]) == 1
    assert "more than" in capsys.readouterr().out


def test_eval_ids_parse_back_to_their_evaluation():
    assert not any("-" in name for name in DATASETS)                      # so the sizes after the name are unambiguous
    for parts in [("linear", "suite/concepts", 1000, 0), ("knn", "curated", 0, 0),
                  ("segmentation", "scenes_shapes", 1000, 500)]:
        assert audit.parse_eval_id(eval_id(*parts)) == parts
    assert audit.parse_eval_id("corruption-1a2b3c4d@curated") is None     # derived rows: they follow from the weights
    assert audit.parse_eval_id("knn@curated-x") is None


def test_the_cheapest_run_and_the_store_summary_count_every_stage_of_training():
    """DnC's train_seconds times its distillation only: its base model and experts are timed under `stages`."""
    rows = {"knn@curated": [{"metric": "knn_acc", "value": 0.5, "threads": 1}]}
    dnc = {"key": "d" * 16, "config": {"method": "dnc"}, "rows": rows,
           "record": {"train_seconds": 30.0, "steps": 10, "threads": 1,
                      "stages": {"base": {"seconds": 40.0}, "experts": [{"seconds": 50.0}, {"seconds": 60.0}]}}}
    simclr = {"key": "s" * 16, "config": {"method": "simclr"}, "rows": rows,
              "record": {"train_seconds": 100.0, "steps": 10, "threads": 2}}
    assert audit.cheapest([dnc, simclr]) is simclr
    assert audit.cheapest([dnc, dict(simclr, record=dict(simclr["record"], train_seconds=200.0))]) is dnc
    for entry in (dnc, simclr):
        store.entry_path(entry["key"]).parent.mkdir(parents=True, exist_ok=True)
        store.entry_path(entry["key"]).write_text(json.dumps(entry))
    # 180 s + 100 s of training, 180 s x 1 thread + 100 s x 2 threads
    assert "training took 0.08 run-hours, 0.11 CPU-thread-hours" in store.summary()
