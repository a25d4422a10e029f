"""bench/: the proposed fast views equal ssl_core's, the timing arithmetic, and one tiny pass of each benchmark."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # `bench` is a folder of scripts, not installed
from bench import fast_views as proposed  # noqa: E402
from bench.timing import Sample, interleave, ratio, timed  # noqa: E402
from ssl_core.data import views as current  # noqa: E402


@pytest.mark.parametrize("kw", [{}, {"hue": 0.0}, {"jitter": 0.0, "hue": 0.0}, {"jitter": 0.8, "hue": 0.3},
                                {"crop_min_scale": 0.08, "out_size": 24}])
def test_proposed_views_equal_current_views_for_one_seed(kw):
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = current.views(x, torch.Generator().manual_seed(5), 3, **kw)
    fast = proposed.views(x, torch.Generator().manual_seed(5), 3, **kw)
    for a, b in zip(ours, fast):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_proposed_crop_and_jitter_equal_current_on_odd_shapes():
    x = torch.rand(6, 3, 20, 28, generator=torch.Generator().manual_seed(1))      # not square (DINO's local crops)
    args = dict(min_scale=0.05, out_size=12, max_scale=0.4, ratio=(0.5, 2.0))
    a = current.resized_crop_flip(x, torch.Generator().manual_seed(2), **args)
    b = proposed.resized_crop_flip(x, torch.Generator().manual_seed(2), **args)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    a = current.color_jitter(x, torch.Generator().manual_seed(3), 0.6, 0.2, p=0.5, gray_p=0.5)
    b = proposed.color_jitter(x, torch.Generator().manual_seed(3), 0.6, 0.2, p=0.5, gray_p=0.5)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


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
    figures = step.measure(width=8, batch=8, steps=1, rounds=1, threads=1, bf16_steps=0, verbose=False)
    assert set(figures) == {step.OURS, *step.LIGHTLY[:2]}
    assert [t[2] for t in step.targets(figures, 8)] == [2.0, 2.0, None]
