"""Corruptions: contract, determinism, growth with severity, and closed-form references."""
import warnings

import pytest
import torch

from ssl_core.data.corruptions import CORRUPTIONS, corrupt


@pytest.fixture(scope="module")
def x():
    """Smooth colour images with edges (a gradient and a square), so blur and noise both show."""
    g = torch.Generator().manual_seed(0)
    n, s = 12, 32
    t = torch.linspace(0, 1, s)
    base = 0.2 + 0.6 * torch.rand(n, 3, 1, 1, generator=g) * t.view(1, 1, 1, s)
    square = torch.zeros(1, 1, s, s)
    square[..., 8:24, 10:22] = 0.3
    return ((base + square).clamp(0, 1) * 255).round().to(torch.uint8)


def distance(a, b):
    return (a.float() - b.float()).abs().mean().item()


def test_at_least_ten_types():
    assert len(CORRUPTIONS) >= 10 and len(set(CORRUPTIONS)) == len(CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_contract_determinism_and_severity(name, x):
    out = [corrupt(x, name, s, seed=0) for s in range(1, 6)]
    assert all(o.shape == x.shape and o.dtype == torch.uint8 for o in out)
    assert torch.equal(out[2], corrupt(x, name, 3, seed=0))             # same seed, same bits
    d = [distance(o, x) for o in out]
    assert d[0] > 0 and d[4] > d[0], d
    if name != "saturate":                                               # ImageNet-C's saturate desaturates first
        assert all(b >= a - 0.05 for a, b in zip(d, d[1:])), d


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                  "glass_blur", "motion_blur", "fog", "elastic_transform"])
def test_random_corruptions_follow_the_seed(name, x):
    assert not torch.equal(corrupt(x, name, 3, seed=0), corrupt(x, name, 3, seed=1))


def test_gaussian_noise_has_its_standard_deviation():
    x = torch.full((64, 3, 32, 32), 128, dtype=torch.uint8)
    noise = corrupt(x, "gaussian_noise", 5, seed=0).float() - 128
    assert abs(noise.std().item() - 0.10 * 255) < 0.5 and abs(noise.mean().item()) < 0.3


def test_contrast_matches_the_formula(x):
    out = corrupt(x, "contrast", 2, seed=0).float()
    for i in range(len(x)):                                              # loop reference, per image
        xi = x[i].float() / 255
        expected = ((xi - xi.mean()) * 0.5 + xi.mean()).clamp(0, 1) * 255
        assert (out[i] - expected.round()).abs().max() <= 1


def test_pixelate_is_block_means(x):
    out = corrupt(x, "pixelate", 3, seed=0)                              # 32 -> 19 -> 32 (area, nearest)
    xf = x.float() / 255
    small = round(32 * 0.6)
    for i in range(2):
        for r in range(32):
            for c in range(0, 32, 5):
                sr, sc = r * small // 32, c * small // 32                # nearest source cell
                r0, r1 = sr * 32 // small, -(-(sr + 1) * 32 // small)    # the cell's area in the input
                c0, c1 = sc * 32 // small, -(-(sc + 1) * 32 // small)
                mean = xf[i, :, r0:r1, c0:c1].mean((1, 2)) * 255
                assert (out[i, :, r, c].float() - mean.round()).abs().max() <= 1


def test_jpeg_matches_an_independent_codec(x):
    from torchvision.io import decode_jpeg, encode_jpeg

    out = corrupt(x, "jpeg_compression", 5, seed=0)
    with warnings.catch_warnings():                                      # torchvision's codec, as a reference
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = decode_jpeg(encode_jpeg(list(x[:3]), quality=40))
    for i in range(3):
        assert distance(out[i], ref[i]) < 1.5


def test_brightness_raises_value_and_keeps_hue(x):
    out = corrupt(x, "brightness", 1, seed=0).float() / 255
    xf = x.float() / 255
    assert torch.allclose(out.amax(1), (xf.amax(1) + 0.05).clamp(max=1), atol=2 / 255)
    ratio_in, ratio_out = xf[:, 0] / xf[:, 1].clamp(min=0.05), out[:, 0] / out[:, 1].clamp(min=0.05)
    bright = xf[:, 1] > 0.2
    assert (ratio_in[bright] - ratio_out[bright]).abs().max() < 0.06


def test_bad_arguments_fail(x):
    with pytest.raises(ValueError, match="corruption"):
        corrupt(x, "snowstorm", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(x.float(), "fog", 1)
