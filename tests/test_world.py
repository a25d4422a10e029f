"""The embedded world: determinism, caching, masks, captions and class balance."""
import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssl_core.data import backgrounds, load_dataset, render, world


@pytest.fixture(autouse=True, scope="module")
def cache(tmp_path_factory):
    """One private cache for the module, so each set is generated once."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_CORE_CACHE", str(path))
        yield path


def digest(data) -> str:
    h = hashlib.sha256()
    for t in (data.images, data.labels, data.masks):
        h.update(t.numpy().tobytes())
    h.update("|".join(data.captions).encode())
    return h.hexdigest()


def test_curated_contract():
    train = load_dataset("curated", "train", seed=0, size=600)
    test = load_dataset("curated", "test", seed=0, size=600)
    assert train.images.shape == (600, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (2000, 3, 32, 32)                  # the test split keeps its size
    assert train.labels.dtype == torch.int64 and train.masks.shape == (600, 32, 32)
    assert train.masks.dtype == torch.uint8 and len(train.captions) == 600
    assert train.num_classes == len(render.CURATED) >= 100
    assert int(train.masks.max()) <= train.num_classes
    assert load_dataset("curated", "train", seed=0, image_size=64, size=50).images.shape == (50, 3, 64, 64)


def test_curated_default_sizes():
    assert world.split_size("curated", "train", 0) == 5000
    assert world.split_size("curated", "test", 0) == 2000


def test_classes_balanced():
    data = load_dataset("curated", "train", seed=3, size=1000)
    counts = torch.bincount(data.labels, minlength=data.num_classes)
    assert int(counts.max() - counts.min()) <= 1


def test_seeds_and_splits_differ():
    a = load_dataset("curated", "train", seed=0, size=200)
    b = load_dataset("curated", "train", seed=1, size=200)
    c = load_dataset("curated", "test", seed=0).subset(torch.arange(200))   # test: its own stream
    assert not torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


NAMES = ["curated", "uncurated", "uncurated_large", "scenes", "spurious", "heldout"]


def digests() -> list[str]:
    """Digests of a small train split of every variant and task, and of the background splits."""
    from ssl_core.data import suite

    sets = [load_dataset(name, "train", seed=5, size=60) for name in NAMES]
    sets += [suite.load_task(name, "train", seed=5, size=60) for name in suite.SUITE]
    sets += list(world.background_splits(seed=5, size=60).values())
    return [digest(d) if d.masks is not None and d.captions else
            hashlib.sha256(d.images.numpy().tobytes() + d.labels.numpy().tobytes()).hexdigest() for d in sets]


def test_bit_identical_across_processes(tmp_path):
    here = digests()
    code = "import json, tests.test_world as t; print(json.dumps(t.digests()))"
    env = {"SSL_CORE_CACHE": str(tmp_path / "other"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=str(world.__file__).rsplit("/ssl_core/", 1)[0])
    assert json.loads(out.stdout) == here


def test_cache_round_trip_and_damage(cache):
    first = load_dataset("curated", "train", seed=2, size=100)
    path = cache / "data" / "curated-train-2-100-32.pt"
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    assert digest(load_dataset("curated", "train", seed=2, size=100)) == digest(first)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])         # truncated file
    assert digest(load_dataset("curated", "train", seed=2, size=100)) == digest(first)
    blob = bytearray(path.read_bytes())                                     # flipped bits in the pixels
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert digest(load_dataset("curated", "train", seed=2, size=100)) == digest(first)


def test_mask_marks_where_the_object_changed_the_background():
    data = load_dataset("curated", "train", seed=4, size=300)
    photo = data.meta["background"] < len(backgrounds.PHOTOS)             # photo backgrounds need no draws
    bg = backgrounds.backgrounds(data.meta["background"][photo], data.meta["crop"][photo], None, 32,
                                 render.CURATED_CONTRAST)
    bg = (bg * 255).round().clamp(0, 255)
    diff = (data.images[photo].float() - bg).abs().amax(1)                   # (n, H, W)
    on = data.masks[photo] > 0
    near = torch.nn.functional.max_pool2d(on[:, None].float(), 5, 1, 2)[:, 0] > 0   # object + 2 px (thin tips)
    assert diff[~near].max() <= 1                                          # background untouched
    assert (diff[on] > 8).float().mean() > 0.9                             # the object changed it
    assert torch.equal(data.masks[photo].amax((1, 2)).long(), data.labels[photo] + 1)


def test_mask_matches_a_loop_reference_for_circles_and_squares():
    data = load_dataset("curated", "train", seed=6, size=400)
    m, s = data.meta, 32
    checked = 0
    for i in range(len(data)):
        shape = render.SHAPE_NAMES[int(m["shape"][i])]
        if shape not in ("circle", "square"):
            continue
        r = float(m["size"][i]) * s / 2                                     # object radius in pixels
        cx, cy = (float(m["x"][i]) + 1) / 2 * s, (float(m["y"][i]) + 1) / 2 * s
        a = float(m["angle"][i])
        for py in range(s):
            for px in range(s):
                dx, dy = px + 0.5 - cx, cy - (py + 0.5)
                u, v = math.cos(a) * dx + math.sin(a) * dy, math.cos(a) * dy - math.sin(a) * dx
                d = math.hypot(u, v) - 0.88 * r if shape == "circle" else max(abs(u), abs(v)) - 0.95 * r / math.sqrt(2)
                if abs(d) > 0.75:
                    assert (data.masks[i, py, px] > 0) == (d < 0), (i, shape, py, px, d)
        checked += 1
    assert checked >= 20


def test_captions_name_the_concept_and_background():
    data = load_dataset("curated", "test", seed=0)
    for i in range(0, len(data), 7):
        concept = render.CURATED[int(data.labels[i])]
        text = data.captions[i]
        assert f"{concept.colour} " in text and text.split(" on ")[0].endswith(concept.shape)
        assert (concept.pattern in text) == (concept.pattern != "solid")
        assert text.endswith(" on " + backgrounds.BACKGROUND_PHRASES[int(data.meta["background"][i])])
        assert data.class_names[int(data.labels[i])] == concept.name
    assert torch.equal(data.superclass, data.meta["shape"])                 # the 8 pretraining shapes come first


def test_unknown_arguments_fail():
    with pytest.raises(ValueError, match="split"):
        load_dataset("curated", "validation")
    with pytest.raises(TypeError):
        load_dataset("curated", "train", correlation=0.5)


# --- the other variants -------------------------------------------------------------------------------
def test_uncurated_is_heavy_tailed_with_empty_images():
    data = load_dataset("uncurated", "train", seed=0, size=3000)
    assert data.num_classes == len(render.POOL) + 1 and data.class_names[-1] == "none"
    counts = torch.bincount(data.labels, minlength=data.num_classes)[:-1].sort(descending=True).values
    head = counts[: len(render.POOL) // 10].sum() / counts.sum()
    assert head > 0.5                                                   # vs 0.10 for balanced classes
    empty = data.labels == len(render.POOL)
    assert 0.05 < empty.float().mean() < 0.15
    assert (data.masks[empty] == 0).all()
    assert all(data.captions[i].startswith("an empty view") for i in empty.nonzero()[:, 0].tolist())
    several = data.meta["objects"] > 1
    assert several.float().mean() > 0.3
    for i in several.nonzero()[:20, 0].tolist():                        # caption: one phrase per object, top first
        assert data.captions[i].count(" and ") == int(data.meta["objects"][i]) - 1
        assert data.captions[i].split(" and ")[0].endswith(render.POOL[int(data.labels[i])].shape)
    assert set(data.masks.unique().tolist()) <= set(range(len(render.POOL) + 1))


def test_uncurated_large_is_four_times_larger():
    assert world.split_size("uncurated_large", "train", 0) == 4 * world.split_size("uncurated", "train", 0)


def test_scenes_masks_hold_every_object():
    data = load_dataset("scenes", "train", seed=0, size=200)
    assert (data.meta["objects"] >= 2).all() and (data.meta["objects"] <= 5).all()
    distinct = torch.tensor([len(set(m.unique().tolist()) - {0}) for m in data.masks])
    assert (distinct >= 2).float().mean() > 0.9                         # occlusion may hide a few
    top = data.labels + 1
    assert ((data.masks == top.view(-1, 1, 1).to(torch.uint8)).flatten(1).any(1)).all()


def test_heldout_concepts_never_in_pretraining():
    data = load_dataset("heldout", "train", seed=0, size=200)
    pretrain = {c.name for c in render.POOL}
    assert not set(data.class_names) & pretrain and len(data.class_names) == 40
    assert not {render.SHAPE_NAMES[s] for s in data.meta["shape"].tolist()} & set(render.PRETRAIN_SHAPES)


@pytest.mark.parametrize("correlation", [0.9, 0.5])
def test_spurious_background_follows_the_class(correlation):
    data = load_dataset("spurious", "train", seed=0, size=800, correlation=correlation)
    typical = torch.tensor([backgrounds.BACKGROUNDS.index(b) for b in world.TYPICAL])[data.labels]
    share = (data.meta["background"] == typical).float().mean().item()
    assert abs(share - correlation) < 0.05 and data.class_names == list(render.PRETRAIN_SHAPES)
    assert torch.equal(data.masks.amax((1, 2)).long(), data.labels + 1)


def test_background_splits():
    splits = world.background_splits(seed=0, size=300)
    assert list(splits) == list(world.BACKGROUND_SPLITS)
    original = splits["original"]
    for name, data in splits.items():
        assert torch.equal(data.labels, original.labels) and data.images.shape == original.images.shape
    solid = original.masks > 0
    inner = -torch.nn.functional.max_pool2d(-solid[:, None].float(), 3, 1, 1)[:, 0] > 0   # away from edges
    for name in ("only_fg", "mixed_same", "mixed_rand"):                 # the same objects everywhere
        pixels = lambda data: data.images.permute(1, 0, 2, 3)[:, inner]
        assert torch.equal(pixels(splits[name]), pixels(original))
    near = torch.nn.functional.max_pool2d(solid[:, None].float(), 5, 1, 2)[:, 0] > 0
    assert (splits["only_fg"].images.permute(1, 0, 2, 3)[:, ~near] == 0).all()   # black around the object
    assert (splits["only_bg"].images.permute(1, 0, 2, 3)[:, solid] == 0).all()    # the object is blacked out
    typical = torch.tensor([backgrounds.BACKGROUNDS.index(b) for b in world.TYPICAL])[original.labels]
    same = (splits["mixed_same"].meta["background"] == typical).float().mean()
    rand = (splits["mixed_rand"].meta["background"] == typical).float().mean()
    assert same > 0.8 and rand < 0.3


def test_every_variant_is_reachable_by_name():
    from ssl_core.data import DATASETS
    assert {"curated", "uncurated", "uncurated_large", "scenes", "spurious", "heldout"} <= set(DATASETS)


# --- the transfer suite ---------------------------------------------------------------------------------
def test_suite_tasks():
    from ssl_core.data import suite

    assert len(suite.SUITE) == 8
    for name, (description, _) in suite.SUITE.items():
        train = load_dataset(f"suite/{name}", "train", seed=0, size=160)
        assert description and train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
        counts = torch.bincount(train.labels, minlength=train.num_classes)
        assert (counts > 0).all(), name
        if name != "digits":                                             # real data keeps its own balance
            assert int(counts.max() - counts.min()) <= 1, name
        if train.masks is not None:
            assert torch.equal(train.masks.amax((1, 2)).long(), train.labels + 1), name


def test_suite_digits_are_sklearns():
    from sklearn.datasets import load_digits
    from ssl_core.data import suite

    x, y = load_digits(return_X_y=True)
    train, test = suite.load_task("digits", "train"), suite.load_task("digits", "test")
    assert len(train) + len(test) == len(y)
    assert sorted(train.labels.tolist() + test.labels.tolist()) == sorted(y.tolist())
    small = torch.nn.functional.avg_pool2d(train.images[:, :1].float(), 4)   # 32 -> 8: back to the grid
    index = [int(i) for i in torch.randperm(len(y), generator=world.generator("digits", 0))[:5]]
    for k, i in enumerate(index):
        assert (small[k, 0] / 255 * 16 - torch.tensor(x[i]).view(8, 8).float()).abs().mean() < 1.5


def test_suite_textures_train_and_test_use_disjoint_rows():
    from ssl_core.data import suite

    train = suite.load_task("textures", "train", size=200)
    test = suite.load_task("textures", "test")
    side, top = train.meta["crop"][:, 0], train.meta["crop"][:, 2]
    assert (top + side <= 2 / 3 + 1e-6).all() and (test.meta["crop"][:, 2] >= 2 / 3 - 1e-6).all()


def test_suite_count_matches_connected_objects():
    from scipy import ndimage
    from ssl_core.data import suite

    data = suite.load_task("count", "train", size=120)
    for mask, label in zip(data.masks, data.labels.tolist()):
        assert ndimage.label(mask.numpy() > 0, structure=np.ones((3, 3)))[1] == label + 1


def test_head_share_known_answers():
    from ssl_core.data.card import head_share

    assert head_share(torch.arange(1000) % 20, 20) == pytest.approx(0.10)        # balanced: 10% hold 10%
    assert head_share(torch.zeros(50, dtype=torch.int64), 20) == pytest.approx(1.0)
    assert head_share(torch.tensor([0] * 7 + [1, 2, 3]), 10) == pytest.approx(0.7)
