"""Stacked runs: N networks as one grouped network (ssl_core.stack), trained together (train_group) and scheduled by
the local backend, checked against the same networks one at a time."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ssl_core import backends, train as trainer
from ssl_core import audit
from ssl_core.config import RunConfig
from ssl_core.grid import run_grid
from ssl_core.methods import METHODS
from ssl_core.runs import file_sha256, finished, pretrain_group, run_dir
from ssl_core.stack import stack_inputs, stack_models, stack_module, stack_state, unstack_state
from ssl_core.train import Diverged, train_group, unstackable

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet10", width=8, epochs=2.0,
                 batch_size=32, device="cpu")


def weights(model) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


@pytest.mark.parametrize("method", ["simclr", "sl_mlp", "byol", "moclr"])
def test_the_stack_computes_each_model_on_its_channel_group_forward_and_backward(method):
    cfg = TINY.replace(method=method)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(METHODS[method](cfg, 10).double().train())   # float64: equal up to rounding, not chaos
    stack = stack_models(models).train()
    xs = [torch.randn(8, 3, 32, 32, dtype=torch.float64) for _ in models]
    separate = [m.network(x) for m, x in zip(models, xs)]
    stacked = stack.network(stack_inputs(xs))
    for a, b in zip(separate, stacked.chunk(3, 1)):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)
    sum(o.square().sum() for o in separate).backward()
    stacked.square().sum().backward()
    grads = stack_state([{n: p.grad for n, p in m.named_parameters() if p.requires_grad} for m in models])
    assert {n for n, p in stack.named_parameters() if p.requires_grad} == set(grads)   # a target stays frozen
    for name, p in stack.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[name], atol=1e-9, rtol=1e-9)
    # a momentum target's EMA update, stacked, is each model's own
    with torch.no_grad():
        for m in [*models, stack]:
            for p in m.parameters():
                p.add_(p.grad if p.grad is not None else 0.0)   # online and target weights differ now
    for m in [*models, stack]:
        m.update_target(0.3)
    # the running statistics each model's batch norms gathered are its own, and so are its target's weights
    for model, state in zip(models, unstack_state(stack.state_dict(), 3)):
        for name, t in model.state_dict().items():
            torch.testing.assert_close(state[name], t, atol=1e-10, rtol=1e-10)


def test_state_dicts_stack_and_unstack_both_ways_optimiser_state_included():
    models = [METHODS["simclr"](TINY.replace(seed=s), 10) for s in range(2)]
    optimizers = [torch.optim.AdamW(m.parameters()) for m in models]
    for m, o in zip(models, optimizers):
        m.network(torch.randn(4, 3, 32, 32)).sum().backward()
        o.step()
    back = unstack_state(stack_state([o.state_dict() for o in optimizers]), 2)
    for o, state in zip(optimizers, back):
        for k, moments in o.state_dict()["state"].items():
            for name, t in moments.items():
                assert torch.equal(state["state"][k][name], t)
    assert back[0]["param_groups"] == optimizers[0].state_dict()["param_groups"]


def test_methods_and_encoders_that_cannot_stack_say_why():
    assert unstackable(TINY) is None and unstackable(TINY.replace(method="supervised")) is None
    assert unstackable(TINY.replace(method="byol")) is None            # its momentum target stacks too
    assert "dino" in unstackable(TINY.replace(method="dino"))          # a forward of its own: not a plain network
    assert "compile" in unstackable(TINY.replace(compile=True))
    assert "vit_tiny" in unstackable(TINY.replace(method="supervised", encoder="vit_tiny"))
    with pytest.raises(TypeError, match="cannot stack a LayerNorm"):
        stack_module(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)), 2)
    with pytest.raises(ValueError, match="equal but for the seed"):
        train_group([TINY, TINY.replace(lr=1.0, seed=1)], ["a", "b"])
    with pytest.raises(ValueError, match="cannot train stacked: method 'dino'"):
        train_group([TINY.replace(method="dino"), TINY.replace(method="dino", seed=1)], ["a", "b"])


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_a_stacked_run_does_not_depend_on_its_neighbours(tmp_path, method):
    cfg = TINY.replace(method=method, epochs=1.0)
    a = train_group([cfg.replace(seed=s) for s in (0, 1, 2)], [tmp_path / f"a{s}" for s in (0, 1, 2)], progress=False)
    b = train_group([cfg.replace(seed=s) for s in (5, 0)], [tmp_path / f"b{s}" for s in (5, 0)], progress=False)
    assert [r.mode for r in a + b] == ["stacked"] * 5
    assert all(torch.equal(x, y) for x, y in zip(weights(a[0].model), weights(b[1].model)))
    assert a[0].losses == b[1].losses and a[0].steps == 256 // 32
    assert not torch.equal(weights(a[0].model)[0], weights(a[1].model)[0])           # seeds differ
    alone = trainer.train(cfg, tmp_path / "alone", progress=False)
    assert alone.mode == "alone" and abs(alone.losses[-1] - a[0].losses[-1]) < 0.1   # another kernel, same run


def test_a_member_that_diverges_is_reported_and_its_neighbours_train_as_without_it(tmp_path, monkeypatch):
    clean = train_group([TINY.replace(seed=s) for s in (0, 1)], [tmp_path / f"c{s}" for s in (0, 1)], progress=False)
    real = trainer.stacked_losses
    monkeypatch.setattr(trainer, "stacked_losses",   # member 1's loss turns NaN from the start: so do its gradients
                        lambda *a: real(*a) * torch.tensor([1.0, float("nan")]))
    run = train_group([TINY.replace(seed=s) for s in (0, 1)], [tmp_path / f"d{s}" for s in (0, 1)], progress=False)
    assert isinstance(run[1], Diverged) and "seed=1" in str(run[1])
    assert all(torch.equal(x, y) for x, y in zip(weights(run[0].model), weights(clean[0].model)))
    assert not (tmp_path / "d1" / "checkpoint.pt").exists()              # a diverged member leaves no checkpoint


def test_a_killed_stack_resumes_to_the_uninterrupted_result(tmp_path, private_cache, monkeypatch):
    cfgs = [TINY.replace(epochs=6.0, seed=s) for s in (0, 1)]
    script = textwrap.dedent(f"""
        import torch
        from ssl_core.config import RunConfig
        from ssl_core.runs import pretrain_group
        torch.set_num_threads({torch.get_num_threads()})
        pretrain_group([RunConfig(**c) for c in {[c.__dict__ for c in cfgs]!r}], progress=False)
    """)
    for name in ("killed", "clean"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").symlink_to(private_cache / "data", target_is_directory=True)
    env = dict(os.environ, SSL_CORE_CACHE=str(tmp_path / "killed"))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    ckpts = [tmp_path / "killed" / "runs" / c.key() / "checkpoint.pt" for c in cfgs]
    deadline = time.time() + 120
    while not all(p.exists() for p in ckpts) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [torch.load(p, weights_only=False)["step"] for p in ckpts]
    assert 0 < min(steps) and max(steps) < 6 * 256 // 32, "killed too late to test resuming"

    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "killed"))
    resumed = [r["model_sha256"] for r in pretrain_group(cfgs, progress=False)]
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "clean"))
    clean = pretrain_group(cfgs, progress=False)
    assert resumed == [r["model_sha256"] for r in clean] and [r["mode"] for r in clean] == ["stacked"] * 2


def test_members_checkpointed_at_different_steps_go_on_apart(tmp_path):
    cfgs = [TINY.replace(seed=s) for s in (0, 1, 2)]
    dirs = [tmp_path / str(s) for s in (0, 1, 2)]
    # member 0 alone has a checkpoint (after 1 epoch of a stack): as if its stack was killed while writing them
    train_group([c.replace(epochs=1.0) for c in cfgs[:2]], [tmp_path / "w0", tmp_path / "w1"], progress=False)
    dirs[0].mkdir()
    (tmp_path / "w0" / "checkpoint.pt").rename(dirs[0] / "checkpoint.pt")
    results = train_group(cfgs, dirs, progress=False)
    assert [r.mode for r in results] == ["alone+stacked", "stacked", "stacked"]
    assert [len(r.losses) for r in results] == [2, 2, 2]


def test_stack_groups_gives_each_worker_a_stack_and_keeps_other_runs_apart():
    five = [TINY.replace(seed=s) for s in range(5)]
    dino = [TINY.replace(method="dino", seed=s) for s in range(3)]
    jobs = backends.stack_groups(five + dino + [TINY.replace(batch_size=64)], workers=2)
    assert sorted(len(j) for j in jobs if j[0].method == "simclr" and j[0].batch_size == 32) == [2, 3]
    assert [len(j) for j in jobs if j[0].method == "dino"] == [1, 1, 1]
    assert [len(j) for j in jobs if j[0].batch_size == 64] == [1]
    ten = [TINY.replace(seed=s) for s in range(10)]
    assert sorted(len(j) for j in backends.stack_groups(ten, workers=1, stack=4)) == [3, 3, 4]
    assert all(len(j) == 1 for j in backends.stack_groups(five, 2, stack=1))


def test_a_grid_stacks_runs_of_one_shape_and_records_the_mode(private_cache):
    configs = [TINY.replace(epochs=0.5, seed=s) for s in range(3)] + [TINY.replace(method="dino", epochs=0.5)]
    df = run_grid(configs, evals=("knn",), parallel=1, eval_size=500)
    assert sorted(df.seed) == [0, 0, 1, 2] and not df.attrs["failures"]
    assert [finished(c)["mode"] for c in configs] == ["stacked"] * 3 + ["alone"]
    alone = run_grid([TINY.replace(epochs=0.5, seed=s) for s in (7, 8)], evals=(), parallel=1, stack=1)
    assert alone.empty and [finished(TINY.replace(epochs=0.5, seed=s))["mode"] for s in (7, 8)] == ["alone"] * 2


def test_the_audit_retrains_a_stacked_run_stacked_and_finds_the_same_bits(private_cache, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CORE_STORE", "write")
    run_grid([TINY.replace(epochs=1.0, seed=s) for s in (3, 4)], evals=("knn",), parallel=1, eval_size=500)
    monkeypatch.setenv("SSL_CORE_STORE", "read")
    assert audit.main(["--runs", "1", "--seed", "0"]) == 0
    assert "same machine kind, 1 metrics recomputed" in capsys.readouterr().out
