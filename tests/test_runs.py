"""The trainer and the run cache under faults: kill and resume, damaged entries, divergence."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from ssl_core.config import RunConfig
from ssl_core.grid import run_grid
from ssl_core.runs import file_sha256, pretrain, run_dir, run_or_load
from ssl_core.train import Diverged

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=512, encoder="resnet18", width=8,
                 epochs=2.0, batch_size=64, device="cpu")


@pytest.fixture(autouse=True)
def _private(private_cache):
    return private_cache


def metrics(df):
    return dict(zip(df.metric, df.value))


def test_same_config_same_weights_and_metrics():
    a = run_or_load(TINY, progress=False)
    sha = file_sha256(run_dir(TINY) / "model.pt")
    os.remove(run_dir(TINY) / "run.json")
    b = run_or_load(TINY, progress=False)
    assert file_sha256(run_dir(TINY) / "model.pt") == sha
    assert metrics(a) == metrics(b)
    assert set(a.metric) == {"knn_acc", "linear_acc"}
    for col in ("method", "dataset", "batch_size", "seed", "epochs", "steps", "train_seconds"):
        assert col in a


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, private_cache, monkeypatch):
    cfg = TINY.replace(epochs=6.0)
    # bit-identical results need the same thread count (float reductions are split per thread)
    script = textwrap.dedent(f"""
        import torch
        from ssl_core.config import RunConfig
        from ssl_core.runs import pretrain
        torch.set_num_threads({torch.get_num_threads()})
        pretrain(RunConfig(**{cfg.__dict__!r}), progress=False)
    """)
    for name in ("killed", "clean"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").symlink_to(private_cache / "data", target_is_directory=True)
    env = dict(os.environ, SSL_CORE_CACHE=str(tmp_path / "killed"))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    ckpt = tmp_path / "killed" / "runs" / cfg.key() / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert ckpt.exists(), "the run never wrote its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert not (ckpt.parent / "run.json").exists() and 0 < step < 6 * (512 // 64), "killed too late to test resuming"

    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "killed"))
    resumed = run_or_load(cfg, progress=False)
    resumed_sha = file_sha256(run_dir(cfg) / "model.pt")
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "clean"))
    clean = run_or_load(cfg, progress=False)
    assert file_sha256(run_dir(cfg) / "model.pt") == resumed_sha
    assert metrics(resumed) == metrics(clean)


def test_damaged_entries_are_detected_and_recomputed():
    first = metrics(run_or_load(TINY, progress=False))
    d = run_dir(TINY)
    (d / "run.json").write_text('{"config": {"method": "simc')              # torn JSON
    with pytest.warns(UserWarning, match="damaged"):
        assert metrics(run_or_load(TINY, progress=False)) == first
    raw = bytearray((d / "model.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF                                              # one flipped byte
    (d / "model.pt").write_bytes(bytes(raw))
    for f in (d / "evals").iterdir():
        f.unlink()
    with pytest.warns(UserWarning, match="damaged"):
        assert metrics(run_or_load(TINY, progress=False)) == first
    next((d / "evals").iterdir()).write_text("not json")
    with pytest.warns(UserWarning, match="damaged"):
        assert metrics(run_or_load(TINY, progress=False)) == first


def test_runs_from_other_source_are_reused_with_a_warning():
    first = pretrain(TINY, progress=False)
    path = run_dir(TINY) / "run.json"
    path.write_text(json.dumps({**first, "source_digest": "0123456789abcdef"}))
    with pytest.warns(UserWarning, match="other ssl_core source .digest 0123456789abcdef"):
        again = pretrain(TINY, progress=False)
    assert again["finished"] == first["finished"]          # reused, not retrained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path.write_text(json.dumps(first))                   # the current source: silent
        pretrain(TINY, progress=False)


def test_diverged_run_is_reported_never_cached_and_the_grid_goes_on():
    bad = TINY.replace(lr=1e12, optimizer="sgd", epochs=1.0)
    with pytest.raises(Diverged, match="loss became"):
        pretrain(bad, progress=False)
    assert not (run_dir(bad) / "run.json").exists()
    df = run_grid([bad, TINY.replace(epochs=1.0)])
    assert len(df.attrs["failures"]) == 1 and df.attrs["failures"][0][0] == bad
    assert set(df.key) == {TINY.replace(epochs=1.0).key()}


def test_zero_budget_is_the_random_initialisation():
    record = pretrain(TINY.replace(epochs=0.0), progress=False)
    assert record["steps"] == 0 and record["losses"] == []


def test_batch_larger_than_dataset_fails_before_training():
    with pytest.raises(ValueError, match="batch_size=1024 is not allowed: the pretraining set has only 512"):
        pretrain(TINY.replace(batch_size=1024), progress=False)


def test_plan_times_dnc_base_and_experts_with_their_own_step(monkeypatch):
    import ssl_core.grid as grid
    from ssl_core.methods.dnc import budget
    seconds = {"moclr": 3.0, "dnc": 1.0}
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: seconds[cfg.method])
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "measure_worker_start_seconds", lambda: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    cfg = TINY.replace(method="dnc", epochs=5.0)
    split, per_epoch = budget(cfg), 512 // 64
    df = grid.plan([cfg, TINY.replace(method="moclr")])
    assert df.est_seconds[0] == pytest.approx(round((split["base"] + split["experts"]) * per_epoch) * 3.0
                                              + round(split["distill"] * per_epoch) * 1.0)
    assert df.est_seconds[1] == pytest.approx(2.0 * per_epoch * 3.0)


def test_plan_says_its_estimate_leaves_out_compilation(monkeypatch, capsys):
    import ssl_core.grid as grid
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    grid.plan([TINY])
    assert "torch.compile" not in capsys.readouterr().out
    grid.plan([TINY, TINY.replace(seed=1, compile=True)])
    assert "eager steps; torch.compile adds ~45 s per new setting" in capsys.readouterr().out


def test_plan_warns_when_other_work_keeps_half_the_cores_busy(monkeypatch):
    import ssl_core.grid as grid
    import ssl_core.preflight as preflight
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    for percent, warned in ((100.0, True), (60.0, True), (40.0, False), (0.0, False)):
        monkeypatch.setattr(preflight.psutil, "cpu_percent", lambda interval, p=percent: p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            grid.plan([TINY])
        busy = [str(w.message) for w in caught if "cores busy" in str(w.message)]
        assert bool(busy) == warned, (percent, busy)


def test_plan_divides_by_the_runs_trained_at_once_and_times_their_threads(monkeypatch, capsys):
    import ssl_core.grid as grid
    timed = []
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: timed.append(threads) or 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "measure_worker_start_seconds", lambda: 7.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    configs = [TINY.replace(seed=s) for s in range(4)]
    df = grid.plan(configs, parallel=2)
    per_run = 2.0 * 512 // 64
    assert timed == [max(1, torch.get_num_threads() // 2)] and df.est_seconds.tolist() == [per_run] * 4
    assert f"2 at a time with {timed[0]} thread(s) each; estimated time {7 + 4 * per_run / 2:.0f} s: starting the " \
           f"workers 7 s, training {4 * per_run / 2:.0f} s" in capsys.readouterr().out   # the workers start once
    monkeypatch.setattr(grid, "pool_running", lambda workers, threads: True)         # kept from an earlier grid
    grid.plan(configs, parallel=2)
    assert f"estimated time {4 * per_run / 2:.0f} s: training" in capsys.readouterr().out


def test_plan_counts_a_run_the_grid_lists_twice_once(monkeypatch, capsys):
    import ssl_core.grid as grid
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 0.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    df = grid.plan([TINY, TINY.replace(seed=1), TINY], parallel=1)
    per_run = 2.0 * 512 // 64
    assert df.est_seconds.tolist() == [per_run, per_run, 0.0]
    assert f"plan: 2 runs, 0 stored or cached, 2 to train on cpu (2 stacked), 1 at a time with {torch.get_num_threads()} " \
           f"thread(s) each; estimated time {2 * per_run:.0f} s: training" in capsys.readouterr().out


def test_eval_size_caches_apart_and_is_checked(monkeypatch):
    import ssl_core.runs as runs
    from ssl_core.runs import eval_path
    cfg = TINY.replace(epochs=0.0)
    sizes = []
    real = runs.load_dataset
    monkeypatch.setattr(runs, "load_dataset", lambda *a, **k: sizes.append(len(d := real(*a, **k))) or d)
    run_or_load(cfg, ("knn",), "curated", progress=False, eval_size=300)
    assert sizes == [300, 2000]                               # train cut to eval_size, test whole
    assert eval_path(cfg, "knn@curated-300").exists() and not eval_path(cfg, "knn@curated").exists()
    with pytest.raises(ValueError, match="eval_size"):
        run_grid([cfg], ("knn",), "curated", eval_size=-1)


def test_compiled_step_trains_like_the_eager_one(tmp_path):
    """cfg.compile runs the same step through torch.compile: same losses up to kernel rounding, same weights' names."""
    from ssl_core.train import load_checkpoint, train
    cfg = TINY.replace(encoder="resnet10", dataset_size=128, batch_size=32, epochs=1.0)
    eager = train(cfg, tmp_path / "eager", progress=False)
    compiled = train(cfg.replace(compile=True), tmp_path / "compiled", progress=False)
    assert compiled.losses == pytest.approx(eager.losses, rel=0.02)
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()
    assert load_checkpoint(tmp_path / "compiled" / "checkpoint.pt", torch.device("cpu"))["model"].keys() == eager.model.state_dict().keys()


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizer_is_fused_and_makes_the_textbook_first_step(name):
    """First step from zero state, closed form: AdamW p(1 - lr wd) - lr g / (|g| + eps) (bias-corrected moments
    are g and g^2); SGD with momentum p - lr (g + wd p)."""
    from ssl_core.train import make_optimizer
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    cfg = TINY.replace(optimizer=name, lr=0.1, weight_decay=0.01)
    optimizer = make_optimizer(cfg, model)
    assert optimizer.defaults["fused"] is True
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    for p, p0, g in zip(model.parameters(), before, grads):
        if name == "adamw":
            expected = p0 * (1 - 0.1 * 0.01) - 0.1 * g / (g.abs() + 1e-8)
        else:
            expected = p0 - 0.1 * (g + 0.01 * p0)
        torch.testing.assert_close(p.detach(), expected)


def test_cudnn_times_its_convolutions_on_cuda_only(monkeypatch):
    from ssl_core.train import tune_device
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_device(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_device(torch.device("cuda"))               # sets a flag only: no GPU needed
    assert torch.backends.cudnn.benchmark is True


def test_plan_adds_each_trained_runs_setup_once_per_stage(monkeypatch):
    import ssl_core.grid as grid
    from ssl_core.config import steps_per_epoch
    from ssl_core.methods.dnc import stage_costs
    monkeypatch.setattr(grid, "measure_step_seconds", lambda cfg, threads=None, stack=1: 1.0)
    monkeypatch.setattr(grid, "measure_setup_seconds", lambda cfg, threads=None: 5.0)
    monkeypatch.setattr(grid, "observed_step_seconds", dict)   # nothing observed: steps are timed
    monkeypatch.setattr(grid, "measure_eval_seconds", lambda cfg, evaluation, threads=None: 0.0)
    dnc = TINY.replace(method="dnc", epochs=5.0)
    df = grid.plan([TINY, TINY.replace(seed=1), TINY, dnc], parallel=1, stack=1)
    per_run = 2.0 * 512 // 64
    assert df.est_seconds.tolist()[:3] == [per_run + 5.0, per_run + 5.0, 0.0]   # listed twice: trained once
    stages = [round(epochs * steps_per_epoch(part, 512)) for part, epochs in stage_costs(dnc)]
    assert len(stages) > 1 and df.est_seconds[3] == pytest.approx(sum(stages) + 5.0 * len(stages))


def test_small_encoders_share_the_cores_and_wider_ones_keep_them(monkeypatch):
    import ssl_core.backends as backends
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    def pair(**knobs):
        return [TINY.replace(seed=s, **knobs) for s in range(2)]

    assert backends.auto_parallel(pair()) == (2, 1)
    assert backends.auto_parallel(pair(encoder="vit_mini")) == (2, 1)        # 1.25x for claim 3's runs and probes
    assert backends.auto_parallel(pair(encoder="vit_mini_p8")) == (2, 1)     # the same ViT on 4x fewer tokens
    assert backends.auto_parallel(pair(encoder="vit_tiny"))[0] == 1
    assert backends.auto_parallel(pair(encoder="vit_tiny_p8"))[0] == 1
    assert backends.auto_parallel(pair(width=32))[0] == 1
    assert backends.auto_parallel(pair()[:1])[0] == 1
