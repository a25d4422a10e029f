"""bench/: the timing arithmetic, and one tiny pass of each benchmark."""
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # `bench` is a folder of scripts, not installed
from bench import gpu_epoch, grid, stacking  # noqa: E402
from bench.timing import Sample, Target, interleave, ratio, timed  # noqa: E402
from ssl_core.budget import step_flops  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.stats import Effect  # noqa: E402
from ssl_core.train import resolve_precision  # noqa: E402


def test_interleave_rotates_and_ratio_is_median_of_round_ratios():
    order, images = [], {"a": iter([10, 20, 40]), "b": iter([5, 5, 5])}
    cases = {name: (lambda name=name: order.append(name) or Sample(next(images[name]), 1.0, 0.5)) for name in "ab"}
    figures = interleave(cases, rounds=3, verbose=False)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert figures["a"].rates() == [10.0, 20.0, 40.0] and figures["a"].median(cpu=True) == 40.0
    assert ratio(figures, "a", "b") == 4.0            # per-round ratios 2, 4, 8


def test_cpu_seconds_count_a_live_child_process():
    import subprocess
    spin = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
            "print(flush=True)\ntime.sleep(3)")
    child = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
    sample = timed(1, child.stdout.readline)          # returns once the child has spun; it is still alive
    child.kill()
    child.wait()
    assert 0.4 <= sample.cpu <= os.cpu_count() * sample.wall + 0.05   # the child's 0.4 CPU-s counted


def test_each_benchmark_runs_one_tiny_round(private_cache):
    pytest.importorskip("lightly")
    from bench import augment, step
    figures = augment.measure(images=256, batch=128, rounds=1, threads=1, verbose=False)
    assert set(figures) >= {"ssl_core views (batched)", augment.REFERENCE, "torchvision v2 per sample"}
    assert all(f.median() > 0 and f.median(cpu=True) > 0 for f in figures.values())
    assert all(t[1] > 0 for t in augment.targets(figures))
    figures = step.measure("resnet10", 8, batch=8, steps=1, rounds=1, threads=1, bf16_steps=0, verbose=False)
    native_bf16 = resolve_precision("auto", torch.device("cpu")) == "bf16"   # then lightly's bf16 settings always run
    assert set(figures) == {step.OURS, step.SHARED, *step.LIGHTLY[:4 if native_bf16 else 2]} | \
        ({step.OURS_FP32} if native_bf16 else set())                          # ours in fp32 too where it picks bf16
    rows = step.targets(figures, "resnet10", 8)
    assert [t.target for t in rows] == [2.0, 2.0, None, None] + [2.0] * native_bf16
    # the rows that time ssl_core in bf16 wait for the accuracy check of that setting; its fp32 row does not
    assert [t.bf16 for t in rows] == ["resnet10:8:simclr" if native_bf16 else None] * 2 + [None] * (2 + native_bf16)


def test_the_shared_step_runs_every_encoder_and_projector_weight_and_no_optimiser():
    from bench import step
    from ssl_core.methods import METHODS
    cfg = RunConfig(encoder="resnet10", width=8, batch_size=4, device="cpu")
    model = METHODS["simclr"](cfg, 10).to(memory_format=torch.channels_last)
    prepare, shared = step.shared_step(cfg, model)
    v = prepare(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert v.shape == (8, 3, 32, 32) and v.is_contiguous(memory_format=torch.channels_last)   # two views of 4
    before = [p.detach().clone() for p in model.parameters()]
    shared(v)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_gpu_epoch_reports_the_epoch_time_counted_flops_and_mfu(private_cache):
    with pytest.raises(ValueError, match="epochs"):
        gpu_epoch.main(["--device", "cpu", "--epochs", "1"])
    out = gpu_epoch.measure("cpu", images=64, batch=32, epochs=2, encoder="resnet10", width=8, peak=0.001)
    rate = float(re.search(r"epoch \(median of 1\) \| [\d.]+ s \(([\d,]+) images/s\)", out).group(1).replace(",", ""))
    tflop = float(re.search(r"counted FLOPs per epoch \| ([\d.e-]+) TFLOP", out).group(1))
    mfu = float(re.search(r"MFU .* \| ([\d.]+)%", out).group(1))
    cfg = RunConfig(encoder="resnet10", width=8, batch_size=32, dataset_size=64)
    assert tflop == pytest.approx(2 * step_flops(cfg) / 1e12, rel=1e-3)           # 2 steps of 32
    # peak 1 GFLOP/s; the printed images/s keeps more digits of the epoch time than its seconds do
    assert mfu == pytest.approx(100 * step_flops(cfg) / 32 * rate / 1e9, rel=0.01)


def test_precision_check_pairs_seeds_and_reads_the_interval_against_the_margin():
    from bench import precision
    from ssl_core.stats import effect
    rows = [("s", "random init", 0, "knn_acc", 10.0, 0.0)]
    for seed, (fp32, bf16, s32, s16) in enumerate([(20.0, 20.5, 4.0, 2.0), (22.0, 22.1, 6.0, 2.0), (21.0, 21.6, 5.0, 2.5)]):
        rows += [("s", "fp32", seed, "knn_acc", fp32, s32), ("s", "bf16", seed, "knn_acc", bf16, s16)]
    df = pd.DataFrame(rows, columns=["setting", "precision", "seed", "metric", "value", "train_seconds"])
    r = precision.summarise(df).iloc[0]
    e90 = effect([0.5, 0.1, 0.6], level=0.90)
    assert (r["random init"], r["fp32"], r["bf16"]) == pytest.approx((10.0, 21.0, 21.4))
    assert (r["bf16 - fp32"], r["90% low"], r["90% high"], r["seeds"]) == pytest.approx((0.4, e90.low, e90.high, 3))
    assert r["speed-up"] == 2.0 and r["verdict"] == "matches"                     # median of 2, 3, 2; CI in +-2
    assert precision.verdict(*(Effect(-3.0, lo, hi, 4) for lo, hi in [(-3.5, -2.5), (-3.8, -2.2)])) == "differs"
    assert precision.verdict(*(Effect(0.0, lo, hi, 4) for lo, hi in [(-2.5, 2.5), (-3.0, 3.0)])) == "inconclusive"
    assert precision.verdict(Effect(0.0, -1.0, 1.0, 4), Effect(0.0, -1.5, 1.5, 4), margin=0.5) == "inconclusive"


def test_precision_check_trains_both_precisions_per_seed_and_rejects_bad_settings(private_cache):
    from bench import precision
    with pytest.raises(ValueError, match="settings='resnet10:simclr'"):
        precision.measure(["resnet10:simclr"])
    with pytest.raises(ValueError, match="method='nope'"):
        precision.measure(["resnet10:8:nope"])
    df = precision.measure(["resnet10:8:supervised"], epochs=0.5, seeds=2, dataset_size=128, threads=1, verbose=False)
    counts = df.groupby(["precision", "metric"]).seed.nunique().to_dict()
    assert counts == {(p, m): 1 if p == "random init" else 2
                      for p in ("random init", "fp32", "bf16") for m in ("knn_acc", "linear_acc")}
    assert df.value.between(0, 100).all() and (df[df.precision != "random init"].train_seconds > 0).all()
    assert os.environ["SSL_CORE_CACHE"] == str(private_cache)            # the private run cache is put back
    assert not (private_cache / "runs").exists()


def test_a_bf16_figure_meets_its_target_only_where_bf16_matches_fp32_in_accuracy():
    from bench.run_all import met
    checks = {"resnet10:8:simclr": True, "resnet18:16:simclr": False}
    assert met(Target("a", 2.5, 2.0), {}) == "yes" and met(Target("a", 1.5, 2.0), checks) == "no"
    assert met(Target("a", 9.0), checks) == "-"
    assert met(Target("a", 2.5, 2.0, "resnet10:8:simclr"), checks) == "yes"
    assert met(Target("a", 1.5, 2.0, "resnet10:8:simclr"), checks) == "no"
    assert met(Target("a", 2.5, 2.0, "resnet18:16:simclr"), checks).startswith("no: bf16 accuracy not shown to match")
    assert met(Target("a", 2.5, 1.2, "resnet18:64:simclr"), checks).startswith("no: bf16 accuracy not checked")
    assert str(Target("a", 2.5, 2.0)) == "a: 2.50x (target 2x)" and str(Target("b", 1.0)) == "b: 1.00x"


def test_run_all_keeps_a_section_it_did_not_remeasure(tmp_path):
    from bench import run_all
    title = "`make figures`, default preset"
    path = tmp_path / "RESULTS.md"
    assert run_all.previous_section(path, title) is None                          # no file yet
    path.write_text(f"# B\n\n## A\n\nfirst\n\n## {title}\n\n| cache | wall s |\n| cold | 1.0 |\n\n## C\n\nlast\n")
    assert run_all.previous_section(path, title) == "| cache | wall s |\n| cold | 1.0 |"
    assert run_all.previous_section(path, "C") == "last" and run_all.previous_section(path, "D") is None


def test_compile_payoff_fits_each_runs_line_and_finds_where_they_cross():
    from bench.compile_payoff import Line, break_even, measure
    eager = Line.through(1, 12.0, 4, 42.0)              # 2 s + 10 s per epoch
    assert (eager.overhead, eager.per_epoch) == pytest.approx((2.0, 10.0))
    compiled = Line(overhead=32.0, per_epoch=7.0)       # 30 s more per run, 3 s less per epoch
    assert break_even(eager, compiled) == pytest.approx(10.0)
    assert eager(10) == pytest.approx(compiled(10))
    assert break_even(eager, Line(32.0, 10.0)) == float("inf")    # epochs no faster: never pays
    with pytest.raises(ValueError, match=r"epochs=\[4, 1\] is not allowed"):
        measure(RunConfig(), epochs=(4, 1))              # before any run starts


def test_a_child_run_gets_this_environment_with_the_overrides_and_unsets(monkeypatch):
    import subprocess
    from bench import timing
    seen = {}
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(subprocess, "Popen", lambda args, env, **kw: seen.update(env=env, args=args))
    timing.train_in_child(RunConfig(width=8), 1, {"OMP_WAIT_POLICY": None, "TORCHINDUCTOR_CACHE_DIR": "/x"})
    assert "OMP_WAIT_POLICY" not in seen["env"] and seen["env"]["TORCHINDUCTOR_CACHE_DIR"] == "/x"
    assert seen["env"]["PATH"] == os.environ["PATH"] and RunConfig(**json.loads(seen["args"][-1])).width == 8


def test_wait_policy_times_each_policy_alone_and_in_pairs_in_alternating_order(monkeypatch):
    from bench import wait_policy
    policies = []

    class Child:                       # a run takes 2 s under the runtime's default and 4 s under PASSIVE
        def __init__(self, env):
            policies.append(env["OMP_WAIT_POLICY"])
            self.seconds = 4.0 if env["OMP_WAIT_POLICY"] == "PASSIVE" else 2.0

        def result(self):
            return {"seconds": self.seconds}

    monkeypatch.setattr(wait_policy, "train_in_child", lambda cfg, threads, env: Child(env))
    cfg = RunConfig(encoder="resnet10", width=8, batch_size=64, dataset_size=300, epochs=1.0)
    out = wait_policy.measure(cfg, rounds=2, verbose=False)
    assert policies == [None, "PASSIVE", None, None, "PASSIVE", "PASSIVE",       # round 1: alone, then pairs
                        "PASSIVE", None, "PASSIVE", "PASSIVE", None, None]       # round 2: PASSIVE first
    # each run trains 256 of the 300 images (whole batches of 64): 128 images/s in 2 s, 64 in 4 s
    assert "| alone | 128 | 64 | 2.00x |" in out and "| two runs at once | 128 | 64 | 2.00x |" in out
    for bad, match in [(dict(rounds=0), "rounds"), (dict(cfg=cfg.replace(dataset_size=32)), "dataset_size")]:
        with pytest.raises(ValueError, match=match):
            wait_policy.measure(**{"cfg": cfg, **bad})
    assert policies[12:] == []                                                   # nothing ran for bad input


def test_grid_bench_times_both_cases_and_writes_its_section(private_cache, tmp_path):
    text, row = grid.measure(runs=2, epochs=0.05, rounds=1)
    assert "grid throughput: " in text and row.target == 1.6 and row.value > 0
    for case in grid.CASES:
        assert case in text
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n## Before\n\nkept\n\n## After\n\nkept too\n")
    grid.write_section(results, grid.TITLE, text)
    grid.write_section(results, grid.TITLE, text)                 # a second pass replaces, never duplicates
    body = results.read_text()
    assert body.count(f"## {grid.TITLE}") == 1 and "## Before" in body and "## After" in body


def test_probe_grid_bench_times_both_cases(private_cache):
    text = grid.measure_probes(runs=2, epochs=0.01, rounds=1, train=16, test=8)
    assert "probe grid throughput: " in text and "(parallel=1)" in text and "(parallel=0: automatic)" in text


def test_the_stacking_bench_times_both_cases_and_judges_the_paired_check():
    seconds = stacking.step_seconds(batch=4, models=2, threads=1, steps=1, rounds=1)
    assert set(seconds) == {"one after another", "stacked"} and all(s[0] > 0 for s in seconds.values())
    rows = [{"mode": mode, "seed": seed, "metric": "linear_acc", "value": 70.0 + seed}
            for mode in ("alone", "stacked") for seed in range(8)]
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.3]
    for row in rows:
        row["value"] += noise[row["seed"]] if row["mode"] == "stacked" else 0.0
    assert stacking.paired_table(pd.DataFrame(rows)).splitlines()[-1].endswith("| 8 | matches |")
    for row in rows:
        row["value"] += 5.0 if row["mode"] == "stacked" else 0.0
    assert stacking.paired_table(pd.DataFrame(rows)).splitlines()[-1].endswith("| 8 | differs |")

