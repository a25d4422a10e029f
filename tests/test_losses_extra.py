"""BYOL, DINO, CLIP, MAE and DnC-distillation losses against per-sample loop references and known answers."""
import math

import pytest
import torch

from ssl_core.losses.byol import byol
from ssl_core.losses.clip import clip
from ssl_core.losses.dino import dino, dino_center
from ssl_core.losses.distill import dnc_distill
from ssl_core.losses.mae import mae, patchify, unpatchify

N, D = 6, 5


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def log_softmax(v):
    m = max(v)
    log_z = m + math.log(sum(math.exp(x - m) for x in v))
    return [x - log_z for x in v]


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


# --- loop references (plain Python over samples) ---------------------------------------------

def byol_ref(p1, p2, z1, z2):
    rows = lambda t: t.tolist()
    one = sum(2 - 2 * cos(p, z) for p, z in zip(rows(p1), rows(z2))) / len(p1)
    two = sum(2 - 2 * cos(p, z) for p, z in zip(rows(p2), rows(z1))) / len(p2)
    return one + two


def dino_ref(student, teacher, center, t_s, t_t):
    terms = []
    for g in range(len(teacher)):
        for v in range(len(student)):
            if v == g:
                continue
            total = 0.0
            for n in range(student.shape[1]):
                q = [math.exp(x) for x in log_softmax([(a - c) / t_t for a, c in zip(teacher[g, n].tolist(), center.tolist())])]
                log_p = log_softmax([a / t_s for a in student[v, n].tolist()])
                total += -sum(qk * lk for qk, lk in zip(q, log_p))
            terms.append(total / student.shape[1])
    return sum(terms) / len(terms)


def clip_ref(u, v, t):
    u, v = [unit(r) for r in u.tolist()], [unit(r) for r in v.tolist()]
    n = len(u)
    s = [[sum(a * b for a, b in zip(u[i], v[j])) / t for j in range(n)] for i in range(n)]
    image_to_text = sum(-log_softmax(s[i])[i] for i in range(n)) / n
    text_to_image = sum(-log_softmax([s[i][j] for i in range(n)])[j] for j in range(n)) / n
    return (image_to_text + text_to_image) / 2


def mae_ref(pred, target, mask, norm_pix):
    total, count = 0.0, 0
    for n in range(pred.shape[0]):
        for l in range(pred.shape[1]):
            if not mask[n, l]:
                continue
            x = target[n, l].tolist()
            if norm_pix:
                mean = sum(x) / len(x)
                var = sum((a - mean) ** 2 for a in x) / (len(x) - 1)
                x = [(a - mean) / math.sqrt(var + 1e-6) for a in x]
            total += sum((a - b) ** 2 for a, b in zip(pred[n, l].tolist(), x)) / len(x)
            count += 1
    return total / count


def dnc_ref(r_b, z_b, r_k, z_k, targets="both"):
    total = 0.0
    for i in range(len(r_b)):
        if targets in ("both", "base"):
            total += 0.5 * sum((a - b) ** 2 for a, b in zip(unit(r_b[i].tolist()), unit(z_b[i].tolist())))
        if targets in ("both", "experts"):
            total += 0.5 * sum((a - b) ** 2 for a, b in zip(unit(r_k[i].tolist()), unit(z_k[i].tolist())))
    return total / len(r_b)


# --- matches the references ------------------------------------------------------------------

def test_byol_matches_loop_reference():
    p1, p2, z1, z2 = (rand(N, D, seed=s) for s in range(4))
    assert byol(p1, p2, z1, z2).item() == pytest.approx(byol_ref(p1, p2, z1, z2), abs=1e-5)


@pytest.mark.parametrize("n_crops", [2, 4])
def test_dino_matches_loop_reference(n_crops):
    student, teacher, center = rand(n_crops, N, D, seed=1), rand(2, N, D, seed=2), rand(D, seed=3)
    got = dino(student, teacher, center, 0.1, 0.04).item()
    assert got == pytest.approx(dino_ref(student, teacher, center, 0.1, 0.04), abs=1e-5)
    assert dino(list(student), teacher, center, 0.1, 0.04).item() == pytest.approx(got, abs=1e-6)


def test_dino_center_is_the_ema_of_the_batch_mean():
    center, teacher = rand(D, seed=0), rand(2, N, D, seed=1)
    got = dino_center(center, teacher, momentum=0.9)
    for k in range(D):
        mean = sum(teacher[g, n, k].item() for g in range(2) for n in range(N)) / (2 * N)
        assert got[k].item() == pytest.approx(0.9 * center[k].item() + 0.1 * mean, abs=1e-6)


def test_clip_matches_loop_reference():
    u, v = rand(N, D, seed=4), rand(N, D, seed=5)
    assert clip(u, v, 0.07).item() == pytest.approx(clip_ref(u, v, 0.07), abs=1e-5)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_matches_loop_reference(norm_pix):
    pred, target = rand(3, 8, 12, seed=6), rand(3, 8, 12, seed=7)
    mask = rand(3, 8, seed=8) > 0
    assert mae(pred, target, mask, norm_pix).item() == pytest.approx(mae_ref(pred, target, mask, norm_pix), abs=1e-5)


@pytest.mark.parametrize("targets", ["both", "base", "experts"])
def test_dnc_distill_matches_loop_reference(targets):
    r_b, z_b, r_k, z_k = (rand(N, D, seed=s) for s in range(10, 14))
    got = dnc_distill(r_b, z_b, r_k, z_k, targets=targets).item()
    assert got == pytest.approx(dnc_ref(r_b, z_b, r_k, z_k, targets), abs=1e-5)


def test_dnc_distill_one_term_needs_only_its_inputs_and_rejects_unknown_targets():
    r, z = rand(N, D, seed=0), rand(N, D, seed=1)
    assert dnc_distill(r, z, None, None, targets="base").item() == pytest.approx(dnc_ref(r, z, r, z, "base"), abs=1e-5)
    assert dnc_distill(None, None, r, z, targets="experts").item() == pytest.approx(dnc_ref(r, z, r, z, "experts"), abs=1e-5)
    with pytest.raises(ValueError, match="targets='teacher'"):
        dnc_distill(r, z, r, z, targets="teacher")


# --- symmetry in the two views ---------------------------------------------------------------

def test_swapping_views_leaves_the_losses_unchanged():
    a, b, c, d = (rand(N, D, seed=s) for s in range(20, 24))
    assert byol(a, b, c, d).item() == pytest.approx(byol(b, a, d, c).item(), abs=1e-6)
    assert clip(a, b, 0.1).item() == pytest.approx(clip(b, a, 0.1).item(), abs=1e-6)
    assert dnc_distill(a, b, c, d).item() == pytest.approx(dnc_distill(c, d, a, b).item(), abs=1e-6)
    student, teacher, center = rand(4, N, D, seed=24), rand(2, N, D, seed=25), rand(D, seed=26)
    swapped = student[[1, 0, 2, 3]]
    assert dino(student, teacher, center).item() == pytest.approx(dino(swapped, teacher.flip(0), center).item(), abs=1e-6)


# --- known answers ---------------------------------------------------------------------------

def test_byol_is_zero_when_predictions_point_at_the_targets():
    z1, z2 = rand(N, D, seed=0), rand(N, D, seed=1)
    assert byol(3 * z2, 0.5 * z1, z1, z2).item() == pytest.approx(0.0, abs=1e-6)
    assert byol(-z2, -z1, z1, z2).item() == pytest.approx(8.0, abs=1e-6)     # opposite: 2 - 2(-1) per term


def test_dino_of_identical_crops_without_centre_is_the_entropy():
    logits = rand(N, D, seed=0)
    crops = logits.expand(4, N, D)
    p = torch.softmax(logits / 0.1, dim=1)
    entropy = -(p * p.log()).sum(1).mean()
    got = dino(crops, crops[:2], torch.zeros(D, dtype=torch.float64), 0.1, 0.1)
    assert got.item() == pytest.approx(entropy.item(), abs=1e-5)


def test_clip_of_aligned_one_hot_pairs_is_near_zero():
    eye = torch.eye(N, D + 3)
    assert clip(eye, 2 * eye, temperature=0.01).item() < 1e-6
    assert clip(eye, eye.roll(1, 0), temperature=0.01).item() > 10          # mismatched pairs cost a lot


def test_clip_learns_its_temperature_through_a_tensor():
    logit_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    clip(torch.eye(N, D), torch.eye(N, D), 1 / logit_scale.exp()).backward()
    assert logit_scale.grad is not None and logit_scale.grad.item() < 0      # sharper helps aligned pairs


def test_mae_ignores_unmasked_patches():
    pred, target = rand(2, 8, 12, seed=0), rand(2, 8, 12, seed=1)
    mask = torch.zeros(2, 8)
    mask[:, ::3] = 1
    other = pred.clone()
    other[mask == 0] = rand(int((mask == 0).sum()), 12, seed=2)
    assert mae(pred, target, mask).item() == pytest.approx(mae(other, target, mask).item(), abs=1e-12)
    assert mae(pred, pred, mask, norm_pix=False).item() == 0.0


def test_patchify_round_trips_and_lays_patches_out_row_major():
    images = rand(2, 3, 8, 12, seed=0)
    patches = patchify(images, 4)                                             # (2, 6, 48) on a 2x3 grid
    assert patches.shape == (2, 6, 48)
    assert torch.equal(patches[1, 4].reshape(4, 4, 3), images[1, :, 4:8, 4:8].permute(1, 2, 0))  # row 1, column 1
    square = rand(2, 3, 8, 8, seed=1)
    assert torch.equal(unpatchify(patchify(square, 4), 4), square)
    with pytest.raises(ValueError, match="patch=3"):
        patchify(images, 3)


def test_dnc_distill_is_zero_when_predictions_equal_targets_up_to_scale():
    z_b, z_k = rand(N, D, seed=0), rand(N, D, seed=1)
    assert dnc_distill(2 * z_b, z_b, 0.3 * z_k, z_k).item() == pytest.approx(0.0, abs=1e-6)


def test_targets_receive_no_gradient():
    p, z = rand(N, D, seed=0).requires_grad_(), rand(N, D, seed=1).requires_grad_()
    byol(p, p, z, z).backward()
    dnc_distill(p, z, p, z).backward()
    student, teacher = rand(4, N, D, seed=2).requires_grad_(), rand(2, N, D, seed=3).requires_grad_()
    dino(student, teacher, torch.zeros(D, dtype=torch.float64)).backward()
    assert p.grad is not None and student.grad is not None
    assert z.grad is None and teacher.grad is None


# --- a few SGD steps on free embeddings lower each loss --------------------------------------

def _descend(loss_fn, params, steps=20, lr=0.5):
    opt = torch.optim.SGD(params, lr=lr)
    first = loss_fn().item()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return first, loss_fn().item()


def _free(seed, *shape):
    return rand(*shape, seed=seed).float().requires_grad_()


@pytest.mark.parametrize("name", ["byol", "dino", "clip", "mae", "dnc_distill"])
def test_sgd_steps_lower_the_loss(name):
    a, b = _free(0, N, D), _free(1, N, D)
    z1, z2 = rand(N, D, seed=2).float(), rand(N, D, seed=3).float()
    crops, teacher = _free(4, 4, N, D), rand(2, N, D, seed=5).float()
    pred, target, mask = _free(6, 2, 8, 12), rand(2, 8, 12, seed=7).float(), torch.arange(8).repeat(2, 1) % 2
    losses = {
        "byol": (lambda: byol(a, b, z1, z2), [a, b]),
        "dino": (lambda: dino(crops, teacher, torch.zeros(D), 0.1, 0.04), [crops]),
        "clip": (lambda: clip(a, b, 0.1), [a, b]),
        "mae": (lambda: mae(pred, target, mask), [pred]),
        "dnc_distill": (lambda: dnc_distill(a, z1, b, z2), [a, b]),
    }
    first, last = _descend(*losses[name])
    assert last < 0.9 * first, (first, last)
