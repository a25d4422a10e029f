"""Batched augmentation: shapes, dtype, range, seeding, and that each op does what it says."""
import pytest
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


# --- against independent references: affine grid_sample for the crop, one op at a time for the colour ------

def reference_crop_flip(x, g, min_scale, out_size=None, max_scale=1.0, ratio=(3 / 4, 4 / 3)):
    """The crop and flip as an affine grid_sample with reflection padding (same random draws, same order)."""
    import math
    n = x.shape[0]
    u = lambda low, high: low + (high - low) * torch.rand(n, generator=g)
    area, log_r = u(min_scale, max_scale), u(math.log(ratio[0]), math.log(ratio[1]))
    w, h = torch.sqrt(area * log_r.exp()).clamp(max=1.0), torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx, cy = (2 * torch.rand(n, generator=g) - 1) * (1 - w), (2 * torch.rand(n, generator=g) - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    size = out_size or x.shape[-1]
    grid = torch.nn.functional.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def reference_jitter(x, g, strength, hue, p=0.8, gray_p=0.2):
    """Brightness, contrast, saturation, hue (a YIQ rotation), clamp, grayscale: one image at a time."""
    import math
    n = x.shape[0]
    on = torch.rand(n, generator=g) < p
    b, c, s = (1 + on.float() * (-strength + 2 * strength * torch.rand(n, generator=g)) for _ in range(3))
    angle = on.float() * (-hue + 2 * hue * torch.rand(n, generator=g)) * 2 * math.pi if hue > 0 else torch.zeros(n)
    gray = torch.rand(n, generator=g) < gray_p
    yiq = torch.tensor(((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)))
    luma = yiq[0].view(3, 1, 1)
    out = []
    for i in range(n):
        im = x[i] * b[i]
        mean = (im * luma).sum(0).mean()
        im = (im - mean) * c[i] + mean
        lum = (im * luma).sum(0, keepdim=True)
        im = (im - lum) * s[i] + lum
        rot = torch.tensor([[1, 0, 0], [0, math.cos(angle[i]), -math.sin(angle[i])],
                            [0, math.sin(angle[i]), math.cos(angle[i])]])
        im = torch.einsum("ij,jhw->ihw", torch.linalg.inv(yiq) @ rot @ yiq, im).clamp(0, 1)
        out.append((im * luma).sum(0, keepdim=True).expand(3, -1, -1) if gray[i] else im)
    return torch.stack(out)


@pytest.mark.parametrize("args", [dict(min_scale=0.2), dict(min_scale=0.08, out_size=24),
                                  dict(min_scale=0.05, out_size=12, max_scale=0.4, ratio=(0.5, 2.0))])
def test_crop_flip_equals_the_affine_grid_sample(args):
    x = torch.rand(6, 3, 20, 28, generator=torch.Generator().manual_seed(1))      # not square (DINO's local crops)
    a = resized_crop_flip(x, torch.Generator().manual_seed(2), **args)
    b = reference_crop_flip(x, torch.Generator().manual_seed(2), **args)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("strength, hue, p, gray_p", [(0.4, 0.05, 0.8, 0.2), (0.8, 0.3, 0.5, 0.5), (0.4, 0.0, 1.0, 0.0)])
def test_colour_jitter_equals_one_op_at_a_time(strength, hue, p, gray_p):
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    a = color_jitter(x, torch.Generator().manual_seed(3), strength, hue, p=p, gray_p=gray_p)
    b = reference_jitter(x, torch.Generator().manual_seed(3), strength, hue, p=p, gray_p=gray_p)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
