"""plan()'s estimate of evaluation time (ssl_core.estimate), and the smoke check of estimates against measured times."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from ssl_core.config import RunConfig
from ssl_core.data import load_dataset
from ssl_core.estimate import SAMPLE, Evaluation, measure_eval_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import plan_vs_measured  # noqa: E402

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=512, encoder="resnet10", width=8, epochs=1.0,
                 batch_size=64, device="cpu")


class Clock:
    """A perf_counter that moves only when told: the fakes below spend known seconds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_evaluation_seconds_scale_the_timed_samples_to_the_full_sizes(monkeypatch):
    """Embedding at 1 ms per image and a fit of 0.5 s + 2 ms per train image (an affine cost, as L-BFGS over an
    L2 grid has) are recovered exactly at the full sizes from the two timed samples."""
    import ssl_core.estimate as estimate
    clock = Clock()
    monkeypatch.setattr(estimate.time, "perf_counter", clock)

    def embed(encoder, images, device):
        clock.now += 1e-3 * len(images)
        return torch.zeros(len(images), 4)

    def fit(encoder, train, test, device, cache):
        clock.now += 0.5 + 2e-3 * len(train)
        return []

    monkeypatch.setattr(estimate, "extract_features", embed)
    monkeypatch.setitem(estimate.EVALS, "linear", fit)
    train = len(load_dataset("suite/digits", "train", size=2000))
    assert train > estimate.FIT_SAMPLE                         # the fit is extrapolated beyond both samples
    ev = Evaluation([TINY], ("linear",), "suite/digits", train=2000, test=300, copies=3)
    assert measure_eval_seconds(TINY, ev) == pytest.approx(1e-3 * (train + 4 * 300) + 0.5 + 2e-3 * train)
    embeddings_only = Evaluation([TINY], (), "suite/digits", test=300, copies=3)
    assert measure_eval_seconds(TINY, embeddings_only) == pytest.approx(1e-3 * 4 * 300)   # no train split, no fit


def test_a_fit_timed_faster_on_more_images_is_read_as_flat(monkeypatch):
    import ssl_core.estimate as estimate
    clock = Clock()
    monkeypatch.setattr(estimate.time, "perf_counter", clock)
    monkeypatch.setattr(estimate, "extract_features", lambda encoder, images, device: torch.zeros(len(images), 4))
    monkeypatch.setitem(estimate.EVALS, "linear", lambda enc, train, test, device, cache: setattr(
        clock, "now", clock.now + (1.0 if len(train) == SAMPLE else 0.5)) or [])   # noise: the larger is faster
    ev = Evaluation([TINY], ("linear",), "suite/digits", train=2000, test=300)
    assert measure_eval_seconds(TINY, ev) == pytest.approx(0.5)                     # never extrapolated below


def test_evaluation_runs_the_named_evaluations_on_the_samples(monkeypatch):
    import ssl_core.estimate as estimate
    seen = []
    monkeypatch.setitem(estimate.EVALS, "linear", lambda enc, train, test, device, cache: seen.append(
        (len(train), len(test), set(cache) == {id(train), id(test)}, len(cache[id(train)][1]))) or [])
    measure_eval_seconds(TINY, Evaluation([TINY], ("linear",), test=100))
    assert seen == [(SAMPLE, 100, True, SAMPLE), (estimate.FIT_SAMPLE, 100, True, estimate.FIT_SAMPLE)]   # on the
    # timed embeddings, once per train sample


def test_evaluation_is_checked_before_any_compute():
    with pytest.raises(ValueError, match="evaluation='linearr' is not allowed"):
        Evaluation([TINY], ("linearr",))
    with pytest.raises(ValueError, match="copies=-1 is not allowed"):
        Evaluation([TINY], copies=-1)


def test_plan_counts_evaluation_for_the_runs_it_names_once_each(monkeypatch, capsys):
    import ssl_core.grid as grid
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 0.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    timed = []
    monkeypatch.setattr(grid, "measure_eval_seconds",
                        lambda cfg, evaluation, threads=None: timed.append(evaluation.dataset) or 30.0)
    a, b = TINY, TINY.replace(seed=1)
    work = [Evaluation([a, b], ("linear",), "suite/digits"), Evaluation([a], ("knn",), "suite/colour")]
    df = grid.plan([a, b, a], parallel=1, evaluations=work)
    assert df.eval_seconds.tolist() == [60.0, 30.0, 0.0]      # a: both; b: one; a listed twice: counted once
    assert timed == ["suite/digits", "suite/colour"]          # measured once per shape and evaluation
    assert "estimated time 90 s: training 0 s, evaluation 90 s" in capsys.readouterr().out
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 3600.0)
    grid.plan([a], parallel=1, evaluations=work)
    assert "estimated time 120.0 min: training 0 s, evaluation 120.0 min" in capsys.readouterr().out


def test_plan_evaluates_like_run_grid_by_default(monkeypatch):
    import ssl_core.grid as grid
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 0.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    seen = []
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: seen.append(evaluation) or 1.0)
    grid.plan([TINY], parallel=1)
    assert seen == [Evaluation([TINY], ("knn", "linear"))]


def _executed(tmp_path, estimates: list[str], seconds: list[float], whole: float) -> Path:
    """A notebook as papermill leaves it: a first cell (imports) of 5 s, a plan cell per estimate, then cells of `seconds`."""
    def cell(duration, text=""):
        return {"cell_type": "code", "source": "", "metadata": {"papermill": {"duration": duration}},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
    plans = [cell(1.0, f"plan: 4 runs, 0 stored or cached, 4 to train on cpu, 2 at a time with 1 thread(s) each; "
                       f"estimated time {e}: training 1 s, evaluation 2 s\n") for e in estimates]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell(5.0), *plans, *map(cell, seconds)],
                                "metadata": {"papermill": {"duration": whole}}}))
    return path


def test_plan_vs_measured_times_the_cells_after_the_plan_and_fails_off_by_more_than_2x(tmp_path, capsys):
    path = _executed(tmp_path, ["30 s", "1.0 min"], [40.0, 20.0], 70.0)
    assert plan_vs_measured.timings(path) == (90.0, 61.0, 70.0)     # the second plan's cell counts as after the first
    assert plan_vs_measured.main([str(path)]) == 0
    assert plan_vs_measured.main([str(_executed(tmp_path, ["24 s"], [60.0], 70.0))]) == 1     # 24 s against 60 s
    assert capsys.readouterr().out.splitlines()[-1].endswith("0.40     70.0  off by more than 2x")
    assert plan_vs_measured.main([str(_executed(tmp_path, ["2.1 min"], [60.0], 70.0))]) == 1  # 126 s against 60 s


def test_plan_vs_measured_refuses_a_notebook_papermill_did_not_run(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {}}))
    with pytest.raises(ValueError, match="no plan estimate or no papermill duration"):
        plan_vs_measured.timings(path)


def test_plan_skips_evaluations_whose_rows_are_cached_and_counts_the_rest(monkeypatch, private_cache):
    import ssl_core.grid as grid
    from ssl_core.runs import run_or_load
    cfg = TINY.replace(epochs=0.25)
    run_or_load(cfg, evals=("knn",), progress=False)          # trained, and its kNN rows cached
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 1.0)
    done, todo = Evaluation([cfg], ("knn",)), Evaluation([cfg], ("knn", "linear"))
    assert grid.plan([cfg], evaluations=[done]).eval_seconds.tolist() == [0.0]
    assert grid.plan([cfg], evaluations=[todo]).eval_seconds.tolist() == [1.0]   # linear is still to do
    corrupted = Evaluation([cfg], ("knn",), copies=2)        # not run_grid's: its rows are not looked up
    assert grid.plan([cfg], evaluations=[corrupted]).eval_seconds.tolist() == [1.0]


def test_plan_takes_the_seconds_per_step_of_finished_runs_of_the_shape(monkeypatch, private_cache):
    import ssl_core.grid as grid
    from ssl_core import store
    from ssl_core.estimate import observed_step_seconds, step_shape
    from ssl_core.runs import cpu_model
    from ssl_core.train import resolve_precision
    precision = resolve_precision(TINY.precision, torch.device("cpu"))

    def finished(seed: int, seconds: float, threads: int = 1, cpu: str = cpu_model()):
        cfg = TINY.replace(seed=seed)
        record = {"key": cfg.key(), "steps": 100, "train_seconds": seconds, "device": "cpu", "precision": precision,
                  "threads": threads, "cpu": cpu, "stages": None}
        (store.store_dir() / f"{cfg.key()}.json").write_text(json.dumps(
            {"key": cfg.key(), "config": dataclasses.asdict(cfg), "record": record, "rows": {}}))

    store.store_dir().mkdir(parents=True, exist_ok=True)
    assert observed_step_seconds() == {}
    for seed, seconds in enumerate([10.0, 30.0, 20.0]):
        finished(seed + 10, seconds)
    finished(20, 900.0, threads=2)                            # another thread count
    finished(21, 900.0, cpu="another CPU")                    # another machine kind
    observed = observed_step_seconds()
    assert observed[step_shape(TINY, 1)] == pytest.approx(0.2)               # the median of 0.1, 0.3, 0.2
    assert step_shape(TINY.replace(batch_size=32), 1) not in observed        # another shape
    assert len(observed) == 3                                                # 1 thread; 2 threads; another CPU
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: pytest.fail("timed a known shape"))
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "measure_worker_start_seconds", lambda: 0.0)
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    df = grid.plan([TINY, TINY.replace(seed=1)], parallel=2, evaluations=[], stack=1)   # two alone, 1 thread each
    assert df.est_seconds.tolist() == [pytest.approx(0.2 * (512 // 64))] * 2


def test_setup_seconds_count_building_and_writing_a_checkpoint_and_the_model(monkeypatch):
    import ssl_core.estimate as estimate
    written = []
    monkeypatch.setattr(estimate, "save_atomic", lambda obj, path: written.append((path.name, sorted(obj)[:2])))
    seconds = estimate.measure_setup_seconds(TINY, threads=1)
    assert seconds > 0
    assert [name for name, _ in written] == ["checkpoint.pt", "model.pt"]
    assert written[0][1] == ["model", "optimizer"]


def test_plan_counts_the_probes_a_stored_run_lacks(monkeypatch, private_cache):
    import ssl_core.grid as grid
    from ssl_core.budget import probe_rows
    from ssl_core.runs import run_or_load
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    cfg = TINY.replace(epochs=0.25)
    run_or_load(cfg, evals=(), progress=False)                # stored with its training record, no rows
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 1.0)
    probe = Evaluation([cfg], ("knn",), train=64, test=32)
    assert grid.plan([cfg], evaluations=[probe]).eval_seconds.tolist() == [1.0]   # stored, but not probed
    probe_rows(cfg, "knn", cfg.dataset, 64, 32)
    assert grid.plan([cfg], evaluations=[probe]).eval_seconds.tolist() == [0.0]   # probed: rows found by name


def test_plan_trains_again_a_stored_run_its_evaluations_need(monkeypatch, private_cache, capsys):
    import shutil
    import ssl_core.grid as grid
    from ssl_core import store
    from ssl_core.runs import run_dir, run_or_load
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    cfg = TINY.replace(epochs=0.25)
    run_or_load(cfg, evals=(), progress=False)                # stored, no rows
    monkeypatch.setattr(grid, "observed_step_seconds", lambda: {})       # its own record would time it too
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 1.0)
    probe = Evaluation([cfg], ("knn",), train=64, test=32)
    assert grid.plan([cfg], evaluations=[probe]).est_seconds.tolist() == [0.0]     # its weights are cached
    shutil.rmtree(run_dir(cfg))                               # a fresh clone while make evidence runs:
    assert grid.plan([cfg], evaluations=[probe]).est_seconds.tolist() == [0.0]     # the store's weights restored
    shutil.rmtree(run_dir(cfg))
    store.drop_weights()                                      # ... and once it has finished: no weights anywhere
    capsys.readouterr()
    assert grid.plan([cfg], evaluations=[probe]).est_seconds.tolist() == [2.0]     # 0.25 epoch of 8 steps, again
    assert "0 to train and 1 stored to train again for their weights" in capsys.readouterr().out


def test_worker_start_is_timed_once_per_machine_and_kept_in_the_cache(monkeypatch, private_cache):
    import ssl_core.estimate as estimate
    started = []
    monkeypatch.setattr(estimate.subprocess, "run", lambda args, check: started.append(args))
    first = estimate.measure_worker_start_seconds()
    assert started == [[sys.executable, "-c", "import ssl_core.backends"]] and first >= 0
    assert estimate.measure_worker_start_seconds() == first and len(started) == 1   # read back, not timed again
    (private_cache / "estimates" / "worker_start.json").write_text("{damaged")
    with pytest.warns(UserWarning, match="damaged cache entry"):
        estimate.measure_worker_start_seconds()
    assert len(started) == 2                                                        # a damaged entry is timed anew


def test_a_pool_counts_as_running_only_while_its_workers_are_sound(monkeypatch):
    import ssl_core.backends as backends
    pool = type("Pool", (), {"_broken": False})()
    monkeypatch.setattr(backends, "_POOL", {backends._pool_key(2, 1): pool})
    assert backends.pool_running(2, 1) and not backends.pool_running(2, 2)           # another shape: a new pool
    pool._broken = True
    assert not backends.pool_running(2, 1)


def test_plan_shares_the_cores_among_stored_runs_with_probes_to_compute(monkeypatch, private_cache, capsys):
    import ssl_core.backends as backends
    import ssl_core.grid as grid
    from ssl_core.runs import run_or_load
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    cfgs = [TINY.replace(epochs=0.25, seed=s) for s in range(2)]
    for cfg in cfgs:
        run_or_load(cfg, evals=(), progress=False)                   # trained, no rows: claim 3's stored runs
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 1.0)
    monkeypatch.setattr(grid, "measure_worker_start_seconds", lambda: 0.0)
    capsys.readouterr()
    grid.plan(cfgs, evaluations=[Evaluation(cfgs, ("knn",), train=64, test=32)])   # as budget.probe_grid runs them
    assert "0 to train on cpu, 2 at a time with 1 thread(s)" in capsys.readouterr().out
