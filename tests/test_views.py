"""Batched augmentation: shapes, dtype, range, seeding, and that each op does what it says."""
import torch

from ssl_core.data.views import MEAN, STD, color_jitter, normalize, resized_crop_flip, views


def batch(n=8, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_views_shape_dtype_range():
    x = batch()
    out = views(x, torch.Generator().manual_seed(0), 2)
    assert len(out) == 2
    lo, hi = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
    for v in out:
        assert v.shape == (8, 3, 32, 32) and v.dtype == torch.float32
        assert v.min() >= lo - 1e-5 and v.max() <= hi + 1e-5
    assert views(x, torch.Generator().manual_seed(0), 1, out_size=16)[0].shape == (8, 3, 16, 16)


def test_views_are_seeded_and_differ_between_views():
    x = batch()
    a1, a2 = views(x, torch.Generator().manual_seed(3), 2)
    b1, b2 = views(x, torch.Generator().manual_seed(3), 2)
    c1, _ = views(x, torch.Generator().manual_seed(4), 2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2) and not torch.equal(a1, c1)


def test_full_crop_without_flip_is_identity():
    x = batch().float() / 255
    g = torch.Generator().manual_seed(0)
    out = resized_crop_flip(x, g, min_scale=1.0, ratio=(1.0, 1.0))
    flipped = out.flip(-1)
    per_image = torch.minimum((out - x).abs().amax((1, 2, 3)), (flipped - x).abs().amax((1, 2, 3)))
    assert per_image.max() < 1e-4    # each image is itself or its mirror


def test_hue_rotation_keeps_luma_and_grey():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    grey = x[:, :1].expand(-1, 3, -1, -1).clone()
    out = color_jitter(grey, g, strength=0.0, hue=0.5, p=1.0, gray_p=0.0)
    assert torch.allclose(out, grey, atol=1e-5)                     # grey has no hue to rotate
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    mid = 0.4 + 0.2 * x                                              # stay away from clamping
    out = color_jitter(mid, torch.Generator().manual_seed(1), strength=0.0, hue=0.3, p=1.0, gray_p=0.0)
    assert torch.allclose((out * luma).sum(1), (mid * luma).sum(1), atol=1e-4)
    assert not torch.allclose(out, mid, atol=1e-2)


def test_grayscale_probability_one_gives_equal_channels():
    out = color_jitter(torch.rand(4, 3, 8, 8), torch.Generator().manual_seed(0), 0.4, 0.05, gray_p=1.0)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_normalize_matches_definition():
    x = batch(2)
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(normalize(x), expected)
