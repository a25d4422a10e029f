"""Small ViTs (encoder contract, MAE's masked forward) and the caption tokenizer and text encoder."""
import pytest
import torch

import ssl_core.models.vit  # noqa: F401  (registers the ViT encoders)
from ssl_core.config import RunConfig
from ssl_core.losses.clip import clip
from ssl_core.losses.mae import patchify
from ssl_core.methods import METHODS
from ssl_core.models import ENCODERS, build_encoder
from ssl_core.text import CaptionTokenizer, TextEncoder, pseudo_caption

VITS = {"vit_tiny": (192, 4), "vit_tiny_p8": (192, 8), "vit_small": (384, 4), "vit_small_p8": (384, 8)}


_BUILT = {}


def built(name):
    """Each ViT is built once per session: timm's weight init is most of a test's time."""
    if name not in _BUILT:
        torch.manual_seed(0)
        _BUILT[name] = build_encoder(name, image_size=32).eval()
    return _BUILT[name]


@pytest.fixture
def tiny():
    return built("vit_tiny")


def images(n=2, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(VITS))
def test_vit_meets_the_encoder_contract(name):
    dim, patch = VITS[name]
    assert name in ENCODERS
    encoder = built(name)
    x = images()
    grid = 32 // patch
    assert (encoder.dim, encoder.patch_size, encoder.num_patches) == (dim, patch, grid * grid)
    assert encoder(x).shape == (2, dim)
    assert encoder.features(x).shape == (2, dim, grid, grid)


def test_vit_pooled_is_the_cls_token_and_features_are_the_patch_tokens(tiny):
    x = images()
    with torch.no_grad():
        tokens = tiny.tokens(x)                                              # (2, 65, 192)
        assert torch.allclose(tiny(x), tokens[:, 0])
        spatial = tiny.features(x)
    assert torch.allclose(spatial[:, :, 2, 5], tokens[:, 1 + 2 * 8 + 5])     # row 2, column 5 of the 8x8 grid


def test_vit_avg_pool_is_the_mean_patch_token_and_mae_uses_it():
    encoder = build_encoder("vit_mini", image_size=32).eval()
    x = images()
    encoder.pool = "avg"
    with torch.no_grad():
        tokens = encoder.tokens(x)                                           # (2, 65, 128)
        pooled = encoder(x)
    assert torch.allclose(pooled, sum(tokens[:, i] for i in range(1, 65)) / 64, atol=1e-5)
    assert not torch.allclose(pooled, tokens[:, 0])
    assert METHODS["mae"](RunConfig(method="mae", encoder="vit_mini"), num_classes=10).encoder.pool == "avg"
    assert METHODS["dino"](RunConfig(method="dino", encoder="vit_mini"), num_classes=10).encoder.pool == "token"


def test_vit_other_image_sizes_and_bad_sizes():
    assert build_encoder("vit_tiny_p8", image_size=48).features(images(1, 48)).shape == (1, 192, 6, 6)
    with pytest.raises(ValueError, match="image_size=36"):
        build_encoder("vit_tiny_p8", image_size=36)


def test_vit_gradient_reaches_every_parameter(tiny):
    tiny.zero_grad()
    tiny(images()).pow(2).sum().backward()
    missing = [n for n, p in tiny.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_masked_forward_keeps_the_chosen_patches(tiny):
    x = images()
    keep = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(s))[:16] for s in range(2)])
    with torch.no_grad():
        out = tiny.forward_masked(x, keep)
        assert out.shape == (2, 1 + 16, 192)
        # keeping every patch in order is the ordinary forward
        assert torch.allclose(tiny.forward_masked(x, torch.arange(64).repeat(2, 1)), tiny.tokens(x), atol=1e-5)
        # pixels of a dropped patch do not reach the output; patch numbering is patchify's
        dropped = next(i for i in range(64) if i not in keep[0])
        changed = patchify(x, 4)
        changed[0, dropped] += 5.0
        row, col = divmod(dropped, 8)
        x2 = x.clone()
        x2[0, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 5.0
        assert torch.equal(patchify(x2, 4), changed)
        assert torch.allclose(tiny.forward_masked(x2, keep)[0], out[0], atol=1e-6)
        assert not torch.allclose(tiny.tokens(x2)[0], tiny.tokens(x)[0], atol=1e-3)


# --- captions --------------------------------------------------------------------------------

CAPTIONS = ["a small red striped star on gravel", "a large blue circle on grass", "A blue star, on sand."]


def test_tokenizer_is_deterministic_and_pads_truncates_and_marks_unknown_words():
    tok = CaptionTokenizer(CAPTIONS)
    assert tok.vocab == CaptionTokenizer(CAPTIONS[::-1]).vocab
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and tok.vocab[2:] == sorted(tok.vocab[2:])
    assert tok.max_len == 7 and len(tok) == 2 + 12
    ids = tok(["a blue star on purple", "", "a small red striped star on gravel with more words"])
    assert ids.dtype == torch.long and ids.shape == (3, 7)
    assert [tok.vocab[i] for i in ids[0]] == ["a", "blue", "star", "on", "<unk>", "<pad>", "<pad>"]
    assert ids[1].tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert [tok.vocab[i] for i in ids[2]] == CAPTIONS[0].split()


def test_pseudo_caption_names_the_class():
    assert pseudo_caption("red_star") == "a photo of a red star"
    assert pseudo_caption("Airplane") == "a photo of a airplane"


def test_text_encoder_shape_padding_invariance_and_gradients():
    torch.manual_seed(0)
    tok = CaptionTokenizer(CAPTIONS)
    encoder = TextEncoder(len(tok), max_len=10, dim=32, depth=2, heads=4).eval()
    ids = tok(CAPTIONS)
    z = encoder(ids)
    assert z.shape == (3, 32) and encoder.dim == 32
    padded = torch.cat([ids, torch.zeros(3, 3, dtype=torch.long)], dim=1)  # extra padding changes nothing
    assert torch.allclose(encoder(padded), z, atol=1e-5)
    swapped = ids.clone()
    swapped[:, [1, 2]] = swapped[:, [2, 1]]                                # word order matters
    assert not torch.allclose(encoder(swapped), z, atol=1e-4)
    z.sum().backward()
    assert encoder.embed.weight.grad.abs().sum() > 0 and encoder.pos.grad.abs().sum() > 0


def test_text_encoder_learns_to_match_fixed_image_embeddings_under_clip():
    torch.manual_seed(0)
    names = ["red star", "blue circle", "green square", "yellow triangle"]
    tok = CaptionTokenizer([pseudo_caption(n) for n in names])
    encoder = TextEncoder(len(tok), tok.max_len, dim=16)
    ids, image_z = tok([pseudo_caption(n) for n in names]), torch.randn(4, 16)
    opt = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    first = clip(image_z, encoder(ids), 0.1).item()
    for _ in range(30):
        opt.zero_grad()
        clip(image_z, encoder(ids), 0.1).backward()
        opt.step()
    assert clip(image_z, encoder(ids), 0.1).item() < 0.5 * first
