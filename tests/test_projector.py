"""SL-MLP mechanism rows: which features are measured, on which sets, and how effects are oriented."""
import pandas as pd
import pytest
import torch
from torch import nn

from ssl_core.config import RunConfig
from ssl_core.data import ImageSet
from ssl_core.data.views import normalize
from ssl_core.methods import METHODS
from ssl_core.projector import PREDICTED_SIGN, feature_map, mechanism_frame, mechanism_rows, oriented_effects
from ssl_core.runs import load_model


class ChannelMeans(nn.Module):
    """Features = the per-channel mean of the (normalised) image. Shape: (N, 3, H, W) -> (N, 3)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))   # a parameter, so the feature extractor finds a device

    def forward(self, x):
        return self.scale * x.mean((2, 3))


def image_set(images, labels):
    return ImageSet(images, torch.as_tensor(labels), [f"c{i}" for i in range(int(max(labels)) + 1)])


def random_images(n, seed, size=8):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# --- which sets, which features -----------------------------------------------------------------------

def test_feature_map_is_the_encoder_or_the_encoder_then_the_projector():
    cfg = RunConfig(method="sl_mlp", encoder="resnet10", width=8, proj_hidden=16, proj_dim=12)
    model = METHODS["sl_mlp"](cfg, 5).eval()
    x = normalize(random_images(4, seed=0, size=32))
    assert feature_map(model) is model.encoder
    with torch.no_grad():
        z = feature_map(model, "projector")(x)
        reference = model.projector(model.encoder(x))
    assert z.shape == (4, 12)
    torch.testing.assert_close(z, reference)
    supervised = METHODS["supervised"](cfg.replace(method="supervised"), 5)
    with pytest.raises(ValueError, match="view='projector'"):
        feature_map(supervised, "projector")
    with pytest.raises(ValueError, match="view='head'"):
        feature_map(model, "head")


# --- the three mechanisms -------------------------------------------------------------------------------

def test_mechanism_rows_measure_each_eval_set_against_the_pretraining_set():
    pretrain = image_set(random_images(64, seed=1), torch.arange(64) % 4)
    # the same images: no distribution distance
    same = image_set(pretrain.images.clone(), pretrain.labels)
    # two classes, each one repeated image: no intra-class variation
    two = random_images(2, seed=2)
    collapsed = image_set(two.repeat_interleave(10, dim=0), [0] * 10 + [1] * 10)
    # grey images of random brightness: the three channel features are one signal, redundancy 1
    grey = torch.randint(0, 256, (30, 1, 1, 1), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    grey = image_set(grey.expand(30, 3, 8, 8).contiguous(), torch.arange(30) % 3)
    rows = mechanism_rows(ChannelMeans(), pretrain, {"same": same, "collapsed": collapsed, "grey": grey})
    values = {(r["eval_dataset"], r["metric"]): r["value"] for r in rows}
    assert len(rows) == 9 and set(r["metric"] for r in rows) == set(PREDICTED_SIGN)
    assert values["same", "feature_distribution_distance"] == pytest.approx(0, abs=1e-6)
    assert values["collapsed", "feature_distribution_distance"] > 0.01
    assert values["collapsed", "intra_class_variation"] == pytest.approx(0, abs=1e-9)
    assert values["same", "intra_class_variation"] > 0.01
    assert values["grey", "feature_redundancy"] == pytest.approx(1, abs=1e-6)
    assert values["same", "feature_redundancy"] < 0.9


def test_mechanism_rows_intra_class_variation_matches_a_loop_over_images():
    pretrain = image_set(random_images(40, seed=5), torch.arange(40) % 2)
    rows = mechanism_rows(ChannelMeans(), pretrain, {"pretrain": pretrain})
    z = torch.stack([normalize(pretrain.images[i:i + 1])[0].mean((1, 2)).double() for i in range(40)])
    z = z / z.norm(dim=1, keepdim=True)
    reference = sum(sum(((z[i] - z[pretrain.labels == c].mean(0)) ** 2).sum().item()
                        for i in range(40) if pretrain.labels[i] == c) / 20 for c in (0, 1)) / 2
    value = next(r["value"] for r in rows if r["metric"] == "intra_class_variation")
    assert value == pytest.approx(reference, rel=1e-5)


def test_mechanism_frame_measures_the_chosen_view_of_each_run(private_cache):
    cfg = RunConfig(method="sl_mlp", dataset="curated", dataset_size=64, encoder="resnet10", width=8, epochs=0.0,
                    batch_size=32, proj_hidden=32, proj_dim=4, device="cpu")
    pretrain = image_set(random_images(48, seed=6, size=32), torch.arange(48) % 4)
    evals = {"a": image_set(random_images(40, seed=7, size=32), torch.arange(40) % 4)}
    # 4-d features of random images with random labels: not separable, so the probe's optimum is finite and quick
    probe = ("p", image_set(random_images(200, seed=8, size=32), torch.arange(200) % 2),
             image_set(random_images(20, seed=9, size=32), torch.arange(20) % 2))
    configs = [cfg, cfg.replace(seed=1)]
    frame = mechanism_frame(configs, pretrain, evals, view="projector", probe=probe)
    assert len(frame) == 2 * 4 and set(frame.view) == {"projector"} and set(frame.seed) == {0, 1}
    assert set(frame.method) == {"sl_mlp"} and set(frame[frame.metric == "linear_acc"].eval_dataset) == {"p"}
    expected = mechanism_rows(feature_map(load_model(cfg.replace(seed=1)), "projector"), pretrain, evals)
    got = frame[(frame.seed == 1) & (frame.metric != "linear_acc")]
    assert got.value.tolist() == pytest.approx([r["value"] for r in expected], rel=1e-6)
    assert mechanism_frame([], pretrain, evals).empty
    backbone = mechanism_frame(configs[:1], pretrain, evals)
    seed0 = frame[(frame.seed == 0) & (frame.metric == "intra_class_variation")].value.item()
    assert backbone[backbone.metric == "intra_class_variation"].value.item() != pytest.approx(seed0)


# --- effects oriented so the paper's prediction is positive ----------------------------------------------

def test_oriented_effects_flip_the_metrics_the_paper_predicts_lower():
    rows = []
    for seed, shift in enumerate([1.0, 2.0, 3.0]):
        for method, sign in (("supervised", 0), ("sl_mlp", 1)):
            for name, far in (("a", 0.0), ("b", 10.0)):
                rows += [dict(method=method, seed=seed, eval_dataset=name, metric="intra_class_variation",
                              value=1 + far + sign * shift),
                         dict(method=method, seed=seed, eval_dataset=name, metric="feature_distribution_distance",
                              value=5 + far - sign * 1.0),
                         dict(method=method, seed=seed, eval_dataset=name, metric="feature_redundancy",
                              value=0.2 + sign * 0.5)]
    rows += [dict(method=method, seed=0, eval_dataset="excluded", metric="intra_class_variation", value=value)
             for method, value in (("sl_mlp", 1e6), ("supervised", 1.0))]
    effects = oriented_effects(pd.DataFrame(rows), "method", "sl_mlp", "supervised", eval_datasets=["a", "b"])
    assert effects["intra_class_variation"].mean == pytest.approx(2.0)
    assert effects["intra_class_variation"].n == 3 and effects["intra_class_variation"].low < 2.0
    assert effects["feature_distribution_distance"].mean == pytest.approx(1.0)
    assert effects["feature_redundancy"].mean == pytest.approx(-0.5)
    unfiltered = oriented_effects(pd.DataFrame(rows), "method", "sl_mlp", "supervised")
    assert unfiltered["intra_class_variation"].mean > 1e4
    relative = oriented_effects(pd.DataFrame(rows), "method", "sl_mlp", "supervised", eval_datasets=["a", "b"],
                                relative=True)
    # per set in percent of supervised's value there (1 on "a", 11 on "b"), then the mean over the sets
    assert relative["intra_class_variation"].mean == pytest.approx(100 * (2 / 1 + 2 / 11) / 2)
    assert relative["feature_distribution_distance"].mean == pytest.approx(100 * (1 / 5 + 1 / 15) / 2)
    assert relative["feature_redundancy"].mean == pytest.approx(-100 * 0.5 / 0.2)
    missing = oriented_effects(pd.DataFrame(rows), "method", "sl_mlp", "simclr")
    assert missing["feature_redundancy"].n == 0
