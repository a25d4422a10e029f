"""The results store and the parallel grid: stored runs are never retrained, rows follow their weights,
and a run trained beside others gives the bits it gives alone."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ssl_core import store
from ssl_core.config import RunConfig
from ssl_core.grid import run_grid
from ssl_core.runs import eval_path, pretrain, read_record, run_dir, run_or_load

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet10", width=8,
                 epochs=1.0, batch_size=64, device="cpu")


@pytest.fixture(autouse=True)
def _private(private_cache):
    return private_cache


def values(df):
    return dict(zip(df.metric, df.value))


def test_a_stored_run_is_read_without_weights_or_training(monkeypatch, private_cache):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    first = run_or_load(TINY, ("knn", "linear"), progress=False)
    entry = json.loads(store.entry_path(TINY.key()).read_text())
    assert entry["key"] == TINY.key() and set(entry["rows"]) == {"knn@curated", "linear@curated"}
    assert entry["record"]["threads"] == torch.get_num_threads() and "source_digest" in entry["record"]
    shutil.rmtree(private_cache / "runs")                     # a fresh clone: the store, no cache
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    import ssl_core.runs as runs
    monkeypatch.setattr(runs, "train_group", lambda *a, **k: pytest.fail("a stored run was retrained"))
    again = run_or_load(TINY, ("knn", "linear"), progress=False)
    assert values(again) == values(first) and again.steps.tolist() == first.steps.tolist()
    assert not (private_cache / "runs").exists()


def test_a_run_cut_off_before_its_evaluations_resumes_from_the_weights_the_store_keeps(monkeypatch, private_cache,
                                                                                        private_store):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    pretrain(TINY, progress=False)                             # trained; the session ends before any evaluation
    weights = (run_dir(TINY) / "model.pt").read_bytes()
    assert store.weights_path(TINY.key()).read_bytes() == weights
    shutil.rmtree(private_cache / "runs")                      # a fresh machine: only what was committed
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    import ssl_core.runs as runs
    monkeypatch.setattr(runs, "train_group", lambda *a, **k: pytest.fail("a run with kept weights was retrained"))
    assert set(run_or_load(TINY, ("knn",), progress=False).metric) == {"knn_acc"}
    assert (run_dir(TINY) / "model.pt").read_bytes() == weights
    shutil.rmtree(private_cache / "runs")
    store.weights_path(TINY.key()).write_bytes(weights[:-1] + b"x")   # damaged: not restored, so trained again
    assert read_record(TINY) is None and not (run_dir(TINY) / "model.pt").exists()
    cli = subprocess.run([sys.executable, "-m", "ssl_core.store", "--drop-weights"], capture_output=True, text=True,
                         env=dict(os.environ, SSL_CORE_RESULTS=str(private_store)))
    assert cli.returncode == 0 and "dropped the kept weights of 1 run(s)" in cli.stdout, cli.stderr
    assert not list((private_store / "weights").iterdir()) and store.entry_path(TINY.key()).exists()


def test_store_off_and_read_never_write(monkeypatch):
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    run_or_load(TINY, ("knn",), progress=False)
    assert not store.entry_path(TINY.key()).exists()
    monkeypatch.setenv("SSL_CORE_STORE", "bogus")
    with pytest.raises(ValueError, match="SSL_CORE_STORE='bogus' is not allowed"):
        run_or_load(TINY, ("knn",), progress=False)


def test_cached_rows_from_other_weights_are_recomputed():
    first = values(run_or_load(TINY, ("knn",), progress=False))
    path = eval_path(TINY, "knn@curated")
    cached = json.loads(path.read_text())
    cached["rows"][0]["value"] = 0.999
    path.write_text(json.dumps(cached))
    assert values(run_or_load(TINY, ("knn",), progress=False))["knn_acc"] == 0.999   # same weights: served
    cached["model_sha256"] = "0" * 64                                                  # rows of other weights
    path.write_text(json.dumps(cached))
    assert values(run_or_load(TINY, ("knn",), progress=False)) == first


def test_a_run_trained_again_to_other_weights_keeps_its_rows_and_names_their_weights(monkeypatch):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    first, second = {"model_sha256": "a" * 64, "steps": 1}, {"model_sha256": "b" * 64, "steps": 1}
    store.add(TINY, first, "knn@curated", [{"metric": "knn_acc", "value": 0.5}])
    store.add(TINY, first)                                          # the same weights: nothing to name
    assert "earlier_weights" not in json.loads(store.entry_path(TINY.key()).read_text())
    store.add(TINY, second, "linear@curated", [{"metric": "linear_acc", "value": 0.6}])
    entry = json.loads(store.entry_path(TINY.key()).read_text())
    assert entry["record"]["model_sha256"] == "b" * 64 and set(entry["rows"]) == {"knn@curated", "linear@curated"}
    assert entry["earlier_weights"] == {"knn@curated": "a" * 64}
    store.add(TINY, {"model_sha256": "c" * 64, "steps": 1})        # a third training: each row keeps its own
    assert json.loads(store.entry_path(TINY.key()).read_text())["earlier_weights"] == {
        "knn@curated": "a" * 64, "linear@curated": "b" * 64}
    store.add(TINY, {"model_sha256": "c" * 64, "steps": 1}, "knn@curated", [{"metric": "knn_acc", "value": 0.4}])
    assert json.loads(store.entry_path(TINY.key()).read_text())["earlier_weights"] == {"linear@curated": "b" * 64}


def test_a_run_in_a_parallel_group_gives_the_bits_it_gives_alone(monkeypatch, private_cache):
    grid = [TINY.replace(seed=s) for s in range(2)]
    together = run_grid(grid, ("knn", "linear"), parallel=2, stack=1)
    assert sorted(json.loads((run_dir(c) / "run.json").read_text())["threads"] for c in grid) == [1, 1]
    shutil.rmtree(private_cache / "runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = run_grid(grid, ("knn", "linear"), parallel=1, stack=1)
    finally:
        torch.set_num_threads(threads)
    key = ["key", "metric"]
    assert together.sort_values(key).value.tolist() == alone.sort_values(key).value.tolist()
    again = run_grid(grid, ("knn", "linear"), parallel=2, stack=1)            # all cached: read here, no worker
    assert again.sort_values(key).value.tolist() == together.sort_values(key).value.tolist()


def test_grids_share_their_workers_and_a_reused_worker_gives_the_bits_of_a_fresh_run(monkeypatch, private_cache):
    import ssl_core.backends as backends
    key = ["key", "metric"]
    run_grid([TINY.replace(seed=s) for s in range(2)], ("knn",), parallel=2, stack=1)
    pool = next(iter(backends._POOL.values()))
    workers = set(pool._processes)
    second = run_grid([TINY.replace(seed=s) for s in (2, 3)], ("knn",), parallel=2, stack=1)   # workers that trained before
    assert next(iter(backends._POOL.values())) is pool and set(pool._processes) == workers
    shutil.rmtree(private_cache / "runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = run_grid([TINY.replace(seed=s) for s in (2, 3)], ("knn",), parallel=1, stack=1)
    finally:
        torch.set_num_threads(threads)
    assert second.sort_values(key).value.tolist() == alone.sort_values(key).value.tolist()
    monkeypatch.setenv("SSL_CORE_CACHE", str(private_cache / "elsewhere"))   # workers must see the new cache
    run_grid([TINY.replace(seed=s) for s in range(2)], ("knn",), parallel=2, stack=1)
    assert next(iter(backends._POOL.values())) is not pool and len(backends._POOL) == 1
    assert (private_cache / "elsewhere" / "runs" / TINY.key()).is_dir()


def test_idle_workers_outlive_an_interrupt_and_a_dead_worker_is_replaced(private_cache):
    import signal
    import time
    import ssl_core.backends as backends
    run_grid([TINY.replace(seed=s) for s in range(2)], ("knn",), parallel=2, stack=1)
    pool = next(iter(backends._POOL.values()))
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGINT)                       # Jupyter's interrupt reaches the kernel's process group
    time.sleep(1)
    run_grid([TINY.replace(seed=s) for s in (2, 3)], ("knn",), parallel=2, stack=1)
    assert next(iter(backends._POOL.values())) is pool
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)                      # killed, as by the out-of-memory killer
    deadline = time.time() + 30
    while not pool._broken and time.time() < deadline:
        time.sleep(0.2)
    after = run_grid([TINY.replace(seed=s) for s in (4, 5)], ("knn",), parallel=2, stack=1)
    assert next(iter(backends._POOL.values())) is not pool and len(after) == 2


def test_two_processes_that_need_one_run_train_it_once(private_cache):
    """Two notebooks on one cache: the second waits for the run, then loads it; the rerun is a cache hit."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import json
        import ssl_core.runs as runs
        from ssl_core.config import RunConfig
        real = runs.train_group
        def train_group(*args, **kwargs):
            print("TRAINED", flush=True)
            return real(*args, **kwargs)
        runs.train_group = train_group
        cfg = RunConfig(**{dataclasses.asdict(TINY.replace(epochs=2.0))!r})
        print(json.dumps(runs.pretrain(cfg, progress=False)["model_sha256"]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(out.count("TRAINED") for out in outs) == 1
    digests = {out.strip().splitlines()[-1] for out in outs}
    assert len(digests) == 1
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600).stdout
    assert "TRAINED" not in again and again.strip().splitlines()[-1] in digests


def test_runs_of_another_world_version_are_recomputed(monkeypatch, private_cache):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    run_or_load(TINY, ("knn",), progress=False, eval_size=300)
    for path in (store.entry_path(TINY.key()), run_dir(TINY) / "run.json"):
        entry = json.loads(path.read_text())
        (entry.get("record") or entry)["world_version"] = 3                 # as if rendered by an older world
        path.write_text(json.dumps(entry))
    assert store.entry(TINY) is None
    with pytest.warns(UserWarning, match="embedded world of version 3"):
        run_or_load(TINY, ("knn",), progress=False, eval_size=300)
    assert json.loads(store.entry_path(TINY.key()).read_text())["record"]["world_version"] != 3
