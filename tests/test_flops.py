"""FLOP counts against closed forms; energy and CO2 arithmetic against the stated tables."""
import pytest
import torch
from torch import nn

from ssl_core.flops import (DEVICE_WATTS, GRID_G_PER_KWH, co2_kg, count_flops, energy_kwh, footprint,
                            training_step_flops, wall_time_and_memory)


def test_linear_forward_and_backward_flops_are_exact():
    with torch.device("meta"):
        layer, x = nn.Linear(64, 32), torch.empty(8, 64)
    forward = 2 * 8 * 64 * 32
    assert count_flops(layer, x) == forward
    # backward: the weight gradient costs one forward; the input gradient another, if asked for
    assert training_step_flops(lambda x: layer(x).sum(), x) == 2 * forward
    assert training_step_flops(lambda x: layer(x).sum(), x.requires_grad_()) == 3 * forward


@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 1), (1, 4)])
def test_conv2d_flops_are_exact(stride, groups):
    with torch.device("meta"):
        conv, x = nn.Conv2d(8, 16, 3, stride=stride, padding=1, groups=groups), torch.empty(2, 8, 16, 16)
    out = 16 // stride
    assert count_flops(conv, x) == 2 * 2 * 16 * out * out * (8 // groups) * 3 * 3


def test_torchvision_resnet18_is_1_82_gmacs_per_image():
    import torchvision
    with torch.device("meta"):
        model, x = torchvision.models.resnet18(), torch.empty(2, 3, 224, 224)
    macs_per_image = count_flops(model, x) / 2 / 2
    assert macs_per_image == pytest.approx(1.82e9, rel=0.01)


def test_vit_attention_matmuls_are_counted_on_meta():
    import timm
    n_img, depth, dim, classes = 2, 12, 192, 1000
    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4)
        x = torch.empty(n_img, 3, 32, 32)
    tokens = (32 // 4) ** 2 + 1                                   # patches + class token
    patch_embed = 2 * (tokens - 1) * (3 * 4 * 4) * dim
    linears = depth * 2 * tokens * dim * dim * (3 + 1 + 4 + 4)    # qkv, proj, fc1, fc2 (MLP ratio 4)
    attention = depth * 2 * 2 * tokens * tokens * dim             # q k^T and attn v, all heads
    head = 2 * dim * classes
    assert count_flops(model, x) == n_img * (patch_embed + linears + attention + head)


def test_energy_and_co2_follow_the_tables():
    kwh = energy_kwh(3600, "a100", count=2, pue=1.5)
    assert kwh == pytest.approx(2 * DEVICE_WATTS["a100"] * 1.5 / 1000)
    assert co2_kg(kwh, "FRA") == pytest.approx(kwh * GRID_G_PER_KWH["FRA"] / 1000)
    row = footprint(7200, "cpu-2core", "DEU")
    assert row["co2_kg_est"] == pytest.approx(2 * 12.5 / 1000 * GRID_G_PER_KWH["DEU"] / 1000)
    with pytest.raises(ValueError, match="device_kind='tpu'"):
        energy_kwh(1, "tpu")
    with pytest.raises(ValueError, match="country='Mars'"):
        co2_kg(1, "Mars")


def test_wall_time_and_memory_fills_its_dict():
    with wall_time_and_memory("cpu") as stats:
        torch.ones(1000).sum()
    assert 0 <= stats["wall_s"] < 5 and stats["peak_mem_mb"] > 0
