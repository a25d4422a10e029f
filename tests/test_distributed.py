"""Data-parallel training: 2 CPU processes under torchrun (gloo) against one process on the global batch.

One torchrun launch runs this file as a script (`worker`): each rank computes the loss and the
DDP-averaged gradients for its shard of a fixed global batch, rank 0 saves them, and the tests
compare them with the same computation in this (single) process. It then pretrains a tiny run
through the entry point of `torchrun -m ssl_core.distributed` into the cache.

BatchNorm: torch's SyncBatchNorm needs a GPU, so on CPU the BatchNorm layers are frozen to their
running statistics (eval mode) in both computations: no statistic crosses the batch, and what is
compared is exactly the gathered loss and its gradients. The Contrastive method's views are made
deterministic by constant-colour images (crop and flip leave them unchanged) and no colour jitter,
so its two views coincide; the checks on a linear head use two different random views, so they
cover the gradient through the positive pairs too.
"""
import dataclasses
import json
import os
import subprocess
import sys
from functools import partial

import pytest
import torch
from torch import nn

from ssl_core import ddp, distributed
from ssl_core.config import RunConfig
from ssl_core.losses import dcl, dclw, info_nce
from ssl_core.methods import METHODS
from ssl_core.grid import run_grid
from ssl_core.runs import read_record

B = 8                                      # the global batch
LOSSES = {"info_nce": partial(info_nce, temperature=0.5), "dcl": partial(dcl, temperature=0.5),
          "dclw": partial(dclw, temperature=0.5, sigma=0.5)}
METHOD_CFG = RunConfig(encoder="resnet18", width=8, image_size=16, proj_hidden=16, proj_dim=8, jitter=0.0, hue=0.0,
                       temperature=0.5, device="cpu")
TRAIN_CFG = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet18", width=8, epochs=1.0,
                      batch_size=64, device="cpu", precision="fp32", sync_bn=False)   # SyncBatchNorm needs a GPU


def head_inputs():
    """Fixed features of two views of the global batch and a fixed linear head."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    return torch.randn(B, 6, generator=g), torch.randn(B, 6, generator=g), nn.Linear(6, 4)


def constant_images():
    """B uint8 images of one random colour each (so random crops and flips leave them unchanged)."""
    colours = torch.randint(0, 256, (B, 3, 1, 1), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return colours.expand(B, 3, 16, 16).contiguous()


def method(name):
    torch.manual_seed(0)
    model = METHODS[name](METHOD_CFG.replace(method=name), 10).train()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.eval()                        # running statistics: nothing crosses the batch
    return model


def loss_and_grads(params, loss):
    loss.backward()
    return loss.item(), [p.grad.clone() for p in params]


def head_step(loss_fn, part):
    """Loss and gradients of a linear head on the views' rows `part`, gathered (a no-op alone)."""
    f1, f2, head = head_inputs()
    net = ddp.data_parallel(head, False, torch.device("cpu"))
    z1, z2 = net(torch.cat([f1[part], f2[part]])).chunk(2)
    return loss_and_grads(list(head.parameters()), loss_fn(*ddp.gather(z1, z2)))


def method_step(name, part):
    model = method(name)
    net = ddp.data_parallel(model, False, torch.device("cpu"))
    loss = net(constant_images()[part], torch.zeros(len(part), dtype=torch.long),
               torch.Generator().manual_seed(2))
    return loss_and_grads(list(model.parameters()), loss)


def worker(out: str, config: str) -> None:
    """Run on every rank by torchrun."""
    ddp.setup(torch.device("cpu"))
    rank, n = ddp.world()
    part = ddp.shard(torch.arange(B), rank, n)
    results = {"world": n, "parts": ddp.gather(part)[0]}
    results.update({f"head/{k}": head_step(fn, part) for k, fn in LOSSES.items()})
    results.update({f"method/{k}": method_step(k, part) for k in ("simclr", "dcl")})
    try:
        ddp.data_parallel(nn.Linear(2, 2), True, torch.device("cpu"))
    except ValueError as err:
        results["sync_bn_on_cpu"] = str(err)
    if rank == 0:
        torch.save(results, out)
    distributed.main([config])              # the torchrun entry point: pretrain a tiny run into the cache


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(TRAIN_CFG)))
    env = dict(os.environ, SSL_CORE_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           __file__, str(tmp / "out.pt"), str(tmp / "config.json")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(tmp / "out.pt", weights_only=False), tmp / "cache"


def assert_same(distributed_result, single_result):
    (loss_n, grads_n), (loss_1, grads_1) = distributed_result, single_result
    assert loss_n == pytest.approx(loss_1, rel=1e-5)
    for g_n, g_1 in zip(grads_n, grads_1, strict=True):
        torch.testing.assert_close(g_n, g_1, rtol=1e-4, atol=1e-5 * g_1.abs().max().item())


@pytest.mark.parametrize("name", list(LOSSES))
def test_gathered_loss_on_two_ranks_equals_one_process_on_the_global_batch(ranks, name):
    results, _ = ranks
    assert results["world"] == 2
    assert_same(results[f"head/{name}"], head_step(LOSSES[name], torch.arange(B)))


@pytest.mark.parametrize("name", ["simclr", "dcl"])
def test_contrastive_method_under_ddp_equals_one_process(ranks, name):
    results, _ = ranks
    assert_same(results[f"method/{name}"], method_step(name, torch.arange(B)))


def test_sync_bn_on_cpu_processes_fails_and_says_what_to_do(ranks):
    message = ranks[0]["sync_bn_on_cpu"]
    assert "sync_bn=True is not allowed on cpu" in message and "set sync_bn=False" in message


def test_ranks_gather_the_global_batch_in_order(ranks):
    results, _ = ranks
    assert results["parts"].tolist() == list(range(B))


@pytest.mark.parametrize("b, n", [(8, 1), (8, 2), (12, 3), (64, 8)])
def test_sharding_covers_the_global_batch_exactly_once(b, n):
    idx = torch.randperm(b, generator=torch.Generator().manual_seed(b))
    parts = [ddp.shard(idx, r, n) for r in range(n)]
    assert all(len(p) == b // n for p in parts)
    assert torch.cat(parts).tolist() == idx.tolist()


def test_a_global_batch_that_does_not_split_evenly_fails():
    with pytest.raises(ValueError, match="batch_size=10 is not allowed on 4 processes"):
        ddp.shard(torch.arange(10), 0, 4)


def test_one_process_is_a_plain_process():
    z = torch.randn(4, 3)
    assert ddp.world() == (0, 1) and ddp.gather(z)[0] is z
    model = nn.Linear(3, 2)
    assert ddp.data_parallel(model, True, torch.device("cpu")) is model


def test_torchrun_entry_point_pretrains_into_the_cache(ranks, monkeypatch):
    _, cache = ranks
    monkeypatch.setenv("SSL_CORE_CACHE", str(cache))
    record = read_record(TRAIN_CFG)
    assert record is not None and record["steps"] == 256 // 64
    assert len(record["losses"]) == 1 and torch.isfinite(torch.tensor(record["losses"])).all()
    assert not list(cache.glob("runs/*/.*.tmp")) and not list(cache.glob("runs/*/checkpoint.pt"))


def test_torchrun_backend_reads_cached_runs_and_reports_a_diverged_one(ranks, monkeypatch):
    _, cache = ranks
    monkeypatch.setenv("SSL_CORE_CACHE", str(cache))
    diverges = TRAIN_CFG.replace(lr=1e12, optimizer="sgd")
    df = run_grid([TRAIN_CFG, diverges], ("knn",), "suite/digits", backend="torchrun", nproc_per_node=2)
    assert [cfg for cfg, _ in df.attrs["failures"]] == [diverges]
    assert "loss became" in df.attrs["failures"][0][1] and read_record(diverges) is None
    assert set(df.key) == {TRAIN_CFG.key()} and set(df.metric) == {"knn_acc"}


if __name__ == "__main__":
    worker(*sys.argv[1:])
