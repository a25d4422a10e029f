"""Every method in METHODS: builds, lowers its loss in a few steps, trains its encoder and keeps
the encoder contract with a ResNet and a ViT; momentum targets move as defined; MAE refuses a
ResNet; CLIP's captions (or its pseudo-captions) reach its loss."""
import math

import pytest
import torch

from ssl_core.config import RunConfig
from ssl_core.data import ImageSet, load_dataset
from ssl_core.methods import METHODS
from ssl_core.methods.momentum import MomentumTarget
from ssl_core.train import run_stages


BATCH, CLASSES = 16, 10
# small heads keep each case to seconds on a busy 2-core CPU; the recipes' widths are not under test
SMALL = dict(width=8, batch_size=BATCH, dataset_size=64, proj_hidden=64, proj_dim=32, dino_out_dim=256,
             dino_local_crops=2, mae_decoder_dim=64, mae_decoder_depth=1, clip_text_dim=64, clip_text_depth=1,
             dnc_clusters=2, device="cpu")
VIT_ONLY = {"mae"}
ENCODERS = ("resnet18", "vit_tiny_p8")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """CLIP builds its vocabulary from cfg.dataset: keep the generated set out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CORE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def build(method, encoder="resnet18", **changes):
    cfg = RunConfig(method=method, encoder=encoder, **{**SMALL, **changes}).validate()
    torch.manual_seed(0)
    return METHODS[method](cfg, CLASSES).to(memory_format=torch.channels_last).train()


def batch(method, seed=0):
    """A fixed uint8 batch and what the method learns from: labels, or cluster ids for DnC's student."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, SMALL["dnc_clusters"] if method == "dnc" else CLASSES, (BATCH,), generator=g)
    return x, y


def views_seed(seed=0):
    return torch.Generator().manual_seed(seed)


def train_step(model, optimizer, x, y, progress):
    """One step of ssl_core.train's loop, with the same augmentation draws every time."""
    loss = model(x, y, views_seed())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if hasattr(model, "update_target"):
        model.update_target(progress)
    return loss.item()


@pytest.mark.parametrize("method", sorted(METHODS.keys() - VIT_ONLY) + [f"{m}@vit_tiny_p8" for m in sorted(VIT_ONLY)])
def test_a_few_steps_lower_the_loss(method):
    method, _, encoder = method.partition("@")
    # DINO's loss H(P_t, P_s) rises while its centre moves towards the teacher's mean (the teacher
    # flattens); with centre momentum 0 the warm-up pass puts the centre there, leaving the student's part
    changes = dict(dino_center_momentum=0.0) if method == "dino" else {}
    model = build(method, encoder or "resnet18", **changes)
    x, y = batch(method)
    with torch.no_grad():
        model(x, y, views_seed())                                    # warm-up: batch-norm statistics, DINO's centre
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=1e-3)
    steps = 8
    losses = [train_step(model, optimizer, x, y, (i + 1) / steps) for i in range(steps)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2]), losses


@pytest.mark.parametrize("method,encoder", [(m, e) for m in sorted(METHODS) for e in ENCODERS
                                            if not (m in VIT_ONLY and e == "resnet18")])
def test_one_step_trains_the_encoder_and_keeps_its_contract(method, encoder):
    model = build(method, encoder)
    x, y = batch(method)
    loss = model(x, y, views_seed())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    untrained = [n for n, p in model.encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert untrained == []
    model.eval()
    with torch.no_grad():
        images = torch.randn(4, 3, 32, 32)
        assert model.encoder(images).shape == (4, model.encoder.dim)
        spatial = model.encoder.features(images)
    assert spatial.ndim == 4 and spatial.shape[:2] == (4, model.encoder.dim)


def expected_momentum(base, progress):
    """The cosine schedule written out: `base` at progress 0, 1 at progress 1."""
    return 1 - (1 - base) * (1 + math.cos(math.pi * progress)) / 2


MOMENTUM = ("byol", "dino", "moclr")


def test_the_momentum_methods_are_these():
    built = {name: build(name, "vit_tiny_p8" if name in VIT_ONLY else "resnet18") for name in METHODS}
    assert {name for name, model in built.items() if isinstance(model, MomentumTarget)} == set(MOMENTUM)


@pytest.mark.parametrize("method", MOMENTUM)
def test_momentum_target_moves_as_defined(method):
    model = build(method)
    x, y = batch(method)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    frozen = {k: v.clone() for k, v in model.target.named_parameters()}
    loss = model(x, y, views_seed())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()                                                  # online moves away from the target
    assert all(torch.equal(p, frozen[k]) for k, p in model.target.named_parameters()), "the optimiser moved the target"

    for progress in (0.0, 0.25, 1.0):
        old = {k: p.detach().clone() for k, p in model.target.named_parameters()}
        model.update_target(progress)
        m = expected_momentum(model.cfg.ema_momentum, progress)
        moved = 0
        for name, target in model.target.items():
            online = getattr(model, name)
            for pname, p in target.named_parameters():
                expected = m * old[f"{name}.{pname}"] + (1 - m) * online.get_parameter(pname).detach()
                torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
                moved += not torch.equal(p, old[f"{name}.{pname}"])
        assert (moved > 0) == (progress < 1), "the target moves during the run and stops at its end"


def test_dino_head_spreads_a_nearly_constant_batch():
    """The head's batch norm keeps the bottleneck from following the encoder into a constant (the
    collapse to uniform outputs that DINO's head without it showed at our scale)."""
    from ssl_core.methods.dino import DINOHead
    torch.manual_seed(0)
    head = DINOHead(16, 64, 32, 128).train()
    h = 1 + 1e-3 * torch.randn(32, 16)                                    # the encoder's features: almost one point
    z = torch.nn.functional.normalize(head.mlp(h), dim=-1)               # (32, 32) bottleneck directions
    off_diagonal = (z @ z.T)[~torch.eye(32, dtype=torch.bool)]
    assert off_diagonal.mean() < 0.5, "a plain MLP maps the batch to one direction (cosine ~1)"


def test_mae_rejects_a_resnet():
    with pytest.raises(ValueError, match=r"encoder='resnet18' is not allowed with method='mae'.*'vit_tiny_p8'"):
        build("mae", "resnet18")


def test_clip_learns_from_each_images_caption_or_its_class_pseudo_caption():
    model = build("clip")
    data = load_dataset("curated", "train", size=SMALL["dataset_size"]).subset(torch.arange(BATCH))
    tokens = run_stages(model.prepare(data, workdir=None))           # what the trainer feeds as y
    assert tokens.shape[0] == BATCH
    assert torch.equal(tokens[3], model.tokenizer([data.captions[3]])[0])
    unlabelled = ImageSet(data.images, data.labels, data.class_names)    # no captions: pseudo-captions
    pseudo = run_stages(model.prepare(unlabelled, workdir=None))
    with torch.no_grad():
        by_class = model(data.images, data.labels, views_seed())
        torch.testing.assert_close(model(data.images, pseudo, views_seed()), by_class)
        assert not torch.allclose(model(data.images, tokens, views_seed()), by_class)
