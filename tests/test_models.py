"""The CIFAR ResNet's batch norm: the narrow channels_last path computes what nn.BatchNorm2d computes."""
import pytest
import torch
from torch import nn

from ssl_core.models import BatchNorm2d, build_encoder


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels", [8, 32])
def test_batch_norm_matches_torch_in_either_layout(channels, dtype):
    torch.manual_seed(0)
    ours, reference = BatchNorm2d(channels), nn.BatchNorm2d(channels)
    with torch.no_grad():
        for bn in (ours, reference):
            bn.weight.copy_(torch.linspace(0.5, 1.5, channels))
            bn.bias.copy_(torch.linspace(-1, 1, channels))
    x = (torch.randn(6, channels, 5, 7) * 3 + 1).to(dtype)      # bf16: a conv's output under autocast
    x_ours = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), reference(x_ref)
    assert y_ours.is_contiguous(memory_format=torch.channels_last)     # the layout the next conv expects
    assert (type(y_ours.grad_fn).__name__ == "_RelayoutBackward") == (channels < BatchNorm2d.NARROW)  # narrow: NCHW
    torch.testing.assert_close(y_ours, y_ref)
    grad = torch.randn_like(y_ref)
    y_ours.backward(grad.contiguous(memory_format=torch.channels_last))
    y_ref.backward(grad)
    assert x_ours.grad.is_contiguous(memory_format=torch.channels_last)  # the layout the previous conv gave
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad)
    torch.testing.assert_close(ours.running_mean, reference.running_mean)
    torch.testing.assert_close(ours.running_var, reference.running_var)


def test_resnet_batch_norms_keep_torch_state_dict_names():
    encoder = build_encoder("resnet10", width=8)
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, BatchNorm2d) for m in norms)
    assert "stem.1.running_mean" in encoder.state_dict()
