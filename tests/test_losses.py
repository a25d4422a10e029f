"""The contrastive losses against loop-based references written from their definitions."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_core.losses import coupling_multiplier, dcl, dclw, info_nce


def cos(a, b):
    return float((a @ b) / (a.norm() * b.norm()))


def reference(z1, z2, t, kind, sigma=0.5):
    """Per-anchor loops over the 2N samples, straight from the definitions in the issue."""
    z = torch.cat([z1, z2]).double()
    n2, n = len(z), len(z1)
    partner = lambda i: (i + n) % n2
    s_pos = [cos(z[j], z[partner(j)]) for j in range(n)]
    weights = [2 - n * math.exp(s / sigma) / sum(math.exp(x / sigma) for x in s_pos) for s in s_pos]
    total = 0.0
    for i in range(n2):
        pos = cos(z[i], z[partner(i)]) / t
        keep = [k for k in range(n2) if k != i and (kind == "info_nce" or k != partner(i))]
        log_den = math.log(sum(math.exp(cos(z[i], z[k]) / t) for k in keep))
        w = weights[i % n] if kind == "dclw" else 1.0
        total += -w * pos + log_den
    return total / n2


LOSSES = {"info_nce": info_nce, "dcl": dcl, "dclw": dclw}


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("n,d,t", [(2, 3, 0.5), (5, 8, 0.1), (16, 4, 0.2)])
def test_matches_loop_reference(kind, n, d, t):
    g = torch.Generator().manual_seed(n * 100 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = LOSSES[kind](z1, z2, temperature=t)
    assert got.item() == pytest.approx(reference(z1, z2, t, kind), abs=1e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_symmetric_in_the_two_views(kind):
    z1, z2 = torch.randn(8, 6), torch.randn(8, 6)
    assert LOSSES[kind](z1, z2, temperature=0.2).item() == pytest.approx(LOSSES[kind](z2, z1, temperature=0.2).item(), abs=1e-6)


@pytest.mark.parametrize("kind", LOSSES)
def test_scale_invariant_inputs(kind):
    """The functions l2-normalise raw projections themselves."""
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    assert LOSSES[kind](3 * z1, 0.5 * z2, temperature=0.1).item() == pytest.approx(LOSSES[kind](z1, z2, temperature=0.1).item(), abs=1e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_twenty_sgd_steps_lower_the_loss(kind):
    torch.manual_seed(0)
    z1 = torch.randn(32, 16, requires_grad=True)
    z2 = torch.randn(32, 16, requires_grad=True)
    opt = torch.optim.SGD([z1, z2], lr=0.5)
    first = LOSSES[kind](z1, z2, temperature=0.1)
    for _ in range(20):
        loss = LOSSES[kind](z1, z2, temperature=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first.item() - 0.5


def test_coupling_multiplier_definition_and_batch_dependence():
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    q = coupling_multiplier(z1, z2, 0.1)
    z = torch.cat([z1, z2]).double()
    for i in range(12):
        sims = [math.exp(cos(z[i], z[k]) / 0.1) for k in range(12) if k != i]
        pos = math.exp(cos(z[i], z[(i + 6) % 12]) / 0.1)
        assert q[i].item() == pytest.approx(1 - pos / sum(sims), abs=1e-5)
    # aligned views: with fewer negatives q_B is smaller (the coupling the DCL paper blames)
    torch.manual_seed(0)
    big = F.normalize(torch.randn(256, 16), dim=1)
    near = big + 0.05 * torch.randn_like(big)
    assert coupling_multiplier(big[:8], near[:8], 0.1).mean() < coupling_multiplier(big, near, 0.1).mean()
