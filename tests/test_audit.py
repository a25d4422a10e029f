"""make audit: a stored run recomputed from nothing reproduces every stored metric, and a tampered one is caught."""
import json

from ssl_core import audit, store
from ssl_core.config import RunConfig
from ssl_core.runs import run_or_load

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet10", width=8,
                 epochs=1.0, batch_size=64, device="cpu")


def test_audit_reproduces_a_stored_run_and_catches_a_changed_metric(private_cache, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    run_or_load(TINY, ("knn",), progress=False, eval_size=500)
    run_or_load(TINY, ("knn",), "suite/digits", progress=False, eval_size=500)
    run_or_load(TINY.replace(epochs=0.0), ("knn",), progress=False, eval_size=500)   # random init: nothing to retrain
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    assert audit.main(["--cheapest"]) == 0
    out = capsys.readouterr().out
    assert "same machine kind, 2 metrics recomputed" in out and "every stored metric reproduced" in out
    path = store.entry_path(TINY.key())
    entry = json.loads(path.read_text())
    entry["rows"]["knn@curated-500"][0]["value"] += 0.01
    path.write_text(json.dumps(entry))
    assert audit.main(["--runs", "5", "--seed", "0"]) == 1
    assert "knn@curated-500 knn_acc" in capsys.readouterr().out
    assert json.loads(path.read_text()) == entry                          # the audit never writes the store


def test_eval_ids_parse_back_to_their_evaluation():
    assert audit.parse_eval_id("linear@suite_concepts-1000") == ("linear", "suite/concepts", 1000)
    assert audit.parse_eval_id("knn@curated") == ("knn", "curated", 0)
    assert audit.parse_eval_id("corruption-1a2b3c4d@curated") is None
