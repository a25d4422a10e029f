"""Divide and Contrast end to end on a tiny curated set: a base model, K clusters, K experts and one
student, the budget split, resuming, and the paper's ablations."""
import pytest
import torch
import torch.nn.functional as F

from ssl_core.config import RunConfig
from ssl_core.data import load_dataset
from ssl_core.methods import METHODS
from ssl_core.methods.dnc import DivideAndContrast, budget
from ssl_core.preflight import valid
from ssl_core.train import train


K, N, BATCH = 3, 96, 16
TINY = RunConfig(method="dnc", dataset="curated", dataset_size=N, encoder="resnet18", width=8, batch_size=BATCH,
                 epochs=5.0, proj_hidden=32, proj_dim=16, dnc_clusters=K, device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def data():
    return load_dataset("curated", "train", size=N)


def test_budget_split_is_the_papers_and_sums_to_the_budget():
    for epochs in (1.0, 5.0, 7.3, 100.0):
        split = budget(TINY.replace(epochs=epochs))
        assert sum(split.values()) == pytest.approx(epochs, abs=1e-12)
        assert [split[s] / epochs for s in ("base", "experts", "distill")] == pytest.approx([0.2, 0.6, 0.2])
    split = budget(TINY.replace(epochs=3.0, dnc_schedule="3k"))                   # 1000 / 1500 / 500
    assert [split[s] for s in ("base", "experts", "distill")] == pytest.approx([1.0, 1.5, 0.5])


def test_dnc_makes_k_clusters_k_experts_and_one_student_and_resumes(data, tmp_path):
    result = train(TINY, tmp_path / "run", data, progress=False)
    model, stages = result.model, result.model.stages
    per_epoch = N // BATCH

    # stage 1: the base model ran its 20% of the budget on every image
    assert stages["base"]["steps"] == round(0.2 * TINY.epochs * per_epoch)
    # stage 2: K clusters from k-means on the base projector's hidden layer; k-means' fixed point:
    # every image is nearest (in cosine terms, on unit vectors) to the mean of its own cluster
    cluster = torch.load(tmp_path / "run" / "clusters.pt", weights_only=True)["cluster"]
    assert cluster.shape == (N,) and sorted(cluster.unique().tolist()) == list(range(K))
    assert stages["cluster_sizes"] == torch.bincount(cluster, minlength=K).tolist()
    features = F.normalize(model.hidden_features(data.images), dim=1)
    means = torch.stack([features[cluster == k].mean(0) for k in range(K)])
    assert torch.equal(torch.cdist(features, means).argmin(1), cluster)
    # stage 3: K experts, each N2 = 60% of the budget in epochs over its own cluster only
    assert len(model.experts) == K and len(stages["experts"]) == K
    for k, expert in enumerate(stages["experts"]):
        size = stages["cluster_sizes"][k]
        assert expert["images"] == size and expert["epochs"] == pytest.approx(0.6 * TINY.epochs)
        assert expert["steps"] == round(0.6 * TINY.epochs * (size // min(BATCH, size)))
    weights = [torch.cat([p.flatten() for p in m.parameters()]) for m in (model.base, *model.experts)]
    assert all(not torch.equal(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])
    # stage 4: one student, trained by the trainer's loop for the remaining 20%
    assert result.steps == stages["distill"]["steps"] == round(0.2 * TINY.epochs * per_epoch)
    assert len(result.losses) >= 1 and all(torch.isfinite(torch.tensor(result.losses)))
    with torch.no_grad():
        assert model.encoder(torch.randn(2, 3, 32, 32)).shape == (2, model.encoder.dim)
    assert stages["epochs"] == pytest.approx({"base": 1.0, "experts": 3.0, "distill": 1.0, "total": 5.0})

    # the cache rebuilds it from (cfg, num_classes) alone, as runs.load_model does
    rebuilt = METHODS["dnc"](TINY, result.num_classes)
    rebuilt.load_state_dict(model.state_dict())
    # a second call resumes every stage from its checkpoint: nothing retrains, same weights
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("checkpoint.pt")}
    again = train(TINY, tmp_path / "run", data, progress=False).model
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("ablation", [dict(dnc_partition="random", dnc_targets="base"),
                                      dict(dnc_expert_data="full", dnc_targets="experts")], ids=str)
def test_ablations_run(ablation, data, tmp_path):
    cfg = TINY.replace(epochs=2.5, **ablation).validate()
    result = train(cfg, tmp_path / "run", data, progress=False)
    stages = result.model.stages
    assert isinstance(result.model, DivideAndContrast) and len(result.model.experts) == K
    assert all(torch.isfinite(torch.tensor(result.losses)))
    if cfg.dnc_partition == "random":                                  # equal-sized random clusters
        assert stages["cluster_sizes"] == [N // K] * K
    if cfg.dnc_expert_data == "full":                                  # all images, its cluster's share of steps
        for size, expert in zip(stages["cluster_sizes"], stages["experts"]):
            assert expert["images"] == N
            assert expert["epochs"] == pytest.approx(0.6 * cfg.epochs * size / N)


@pytest.mark.parametrize("field", ["dnc_partition", "dnc_expert_data", "dnc_targets", "dnc_schedule", "dnc_base"])
def test_bad_options_fail_before_any_compute(field):
    with pytest.raises(ValueError, match=f"{field}='nope' is not allowed: choose one of"):
        valid("cfg", TINY.replace(**{field: "nope"}))
