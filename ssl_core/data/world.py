"""The embedded world's datasets, each registered by name and drawn by `ssl_core.data.render`.

Every draw comes from one seeded `torch.Generator`, so a (name, split, seed) gives the same bits in any
process; results are cached as uint8 under `cache_dir()/data`. The variants:
- `curated`: balanced classes, one large, roughly centred object on a faint background (ImageNet's
  object-centric bias).
- `uncurated`, `uncurated_large`: a Zipf-like distribution over a larger pool, several or small
  objects off centre, clutter, full-contrast backgrounds, some images with no object (YFCC-like).
- `scenes`: several objects per image with masks (a COCO analogue).
- `spurious`: each class has a typical background in a `correlation` fraction of its images;
  `background_splits` gives the Backgrounds-Challenge evaluation sets.
- `heldout`: concepts never shown in any pretraining set (concept generalisation).
"""
from __future__ import annotations

import hashlib
import math
import warnings

import torch

from ssl_core.data import ImageSet, cache_dir, register_dataset
from ssl_core.data.backgrounds import BACKGROUNDS, backgrounds, random_crops
from ssl_core.data.render import (COLOUR_NAMES, CURATED, CURATED_CONTRAST, HELDOUT, PATTERNS, POOL, PRETRAIN_SHAPES,
                                  SHAPE_NAMES, VERSION, Objects, caption, compose, describe, draw, object_rgb,
                                  one_thread, render)
from ssl_core.data.views import uniform
from ssl_core.io import save_atomic


# --- seeds and the cache ----------------------------------------------------------------------------
def generator(*key) -> torch.Generator:
    """A CPU generator seeded by a stable hash of `key` (e.g. name, split, seed): same bits everywhere."""
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _digest(fields: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    for key in ("images", "labels", "masks"):
        if fields.get(key) is not None:
            h.update(fields[key].numpy().tobytes())
    return h.hexdigest()


def cached(key: str, build) -> ImageSet:
    """Read ImageSet `key` from cache_dir()/data/<key>.pt, or build and write it (atomically).

    A file that fails to load, comes from another VERSION or fails its checksum is rebuilt.
    """
    path = cache_dir() / "data" / f"{key}.pt"
    try:
        fields = torch.load(path, weights_only=True)
        if fields.pop("version") == VERSION and fields.pop("digest") == _digest(fields):
            return ImageSet(**fields)
    except Exception:   # missing, truncated or foreign file: regenerate it
        pass
    data = build()
    fields = dict(images=data.images, labels=data.labels, class_names=data.class_names, masks=data.masks,
                  captions=data.captions, superclass=data.superclass, meta=data.meta)
    try:
        save_atomic({**fields, "version": VERSION, "digest": _digest(fields)}, path)
    except OSError as error:                                           # e.g. a read-only cache: work uncached
        warnings.warn(f"could not cache {key} in {path.parent}: {error}")
    return data


# --- building a labelled set from a concept list -----------------------------------------------------
def concept_index(concepts, field: str) -> torch.Tensor:
    """Per-concept index of its shape, colour or pattern in the global tables. Shape: (C,)."""
    table = {"shape": SHAPE_NAMES, "colour": COLOUR_NAMES, "pattern": PATTERNS}[field]
    return torch.tensor([table.index(getattr(c, field)) for c in concepts])


def balanced(n: int, classes: int, g: torch.Generator) -> torch.Tensor:
    """n labels, every class within one image of n / classes, in random order. Shape: (n,)."""
    return (torch.arange(n) % classes)[torch.randperm(n, generator=g)]


def place(pool, concept, image, g, *, size, offset, tilt) -> Objects:
    """Objects of the given concepts (indices into `pool`) at random positions and rotations.

    Shape: concept, image, size (M,); returns M objects whose mask value is concept + 1.
    """
    m = len(concept)
    shape, colour, pattern = (concept_index(pool, f)[concept] for f in ("shape", "colour", "pattern"))
    return Objects(image, shape, pattern, uniform(m, -offset, offset, g, "cpu"), uniform(m, -offset, offset, g, "cpu"),
                   size, uniform(m, -tilt, tilt, g, "cpu"), object_rgb(colour, g), concept + 1)


def labelled(pool, objects: Objects, images, masks, background, crop, none_class=False) -> ImageSet:
    """An ImageSet from rendered objects: the label is an image's top (last drawn) object's concept,
    or the extra class "none" (index len(pool), only with `none_class`) when it has no object."""
    n, m = len(background), len(objects.image)
    concept = objects.value - 1
    count = torch.bincount(objects.image, minlength=n)
    last = (torch.cumsum(count, 0) - 1).clamp(min=0)                    # each image's top object
    has = count > 0
    if not none_class and not has.all():
        raise ValueError("every image needs an object unless none_class=True")
    pick = lambda t, empty: torch.where(has, t[last] if m else empty, empty)
    words = [describe(pool[c], z) for c, z in zip(concept.tolist(), objects.size.tolist())]
    start = torch.cumsum(count, 0) - count
    captions = [caption(words[a:a + k][::-1], b)                        # the top object first
                for a, k, b in zip(start.tolist(), count.tolist(), background.tolist())]
    shapes = sorted({SHAPE_NAMES.index(c.shape) for c in pool})         # superclass = the shape family
    superclass_of = torch.tensor([shapes.index(SHAPE_NAMES.index(c.shape)) for c in pool] + [len(shapes)] * none_class)
    nan = torch.tensor(float("nan"))
    colour = concept_index(pool, "colour")[concept]
    meta = dict(shape=pick(objects.shape, -1), colour=pick(colour, -1), pattern=pick(objects.pattern, -1),
                size=pick(objects.size, nan), x=pick(objects.x, nan), y=pick(objects.y, nan),
                angle=pick(objects.angle, nan), objects=count, background=background, crop=crop,
                superclass_of_class=superclass_of, background_names=list(BACKGROUNDS),
                superclass_names=[SHAPE_NAMES[k] for k in shapes] + ["none"] * none_class)
    labels = pick(concept, len(pool))
    class_names = [c.name for c in pool] + ["none"] * none_class
    return ImageSet(images, labels, class_names, masks, captions, superclass_of[labels], meta)


def draw_set(pool, objects: Objects, n: int, g, image_size: int, *, contrast=CURATED_CONTRAST, background=None,
             none_class=False) -> ImageSet:
    """Render placed objects on random (or given) backgrounds and label the images (see `labelled`).

    Shape: background (n,) int64 or None.
    """
    if background is None:
        background = torch.randint(len(BACKGROUNDS), (n,), generator=g)
    crop = random_crops(n, g)
    images, masks = render(objects, background, crop, g, image_size, contrast)
    return labelled(pool, objects, images, masks, background, crop, none_class)


def object_set(pool, concept, image, n, g, image_size, *, size, offset, tilt=math.pi / 6, **kw) -> ImageSet:
    """Images of objects given one row each (sorted by image, drawn in order, the last on top).

    Shape: concept, image, size (M,) per object.
    """
    objects = place(pool, concept, image, g, size=size, offset=offset, tilt=tilt)
    return draw_set(pool, objects, n, g, image_size, **kw)


def by_superclass(data: ImageSet) -> ImageSet:
    """The same images labelled by superclass (shape), masks included."""
    lut = torch.cat([torch.zeros(1, dtype=torch.uint8), data.meta["superclass_of_class"].to(torch.uint8) + 1])
    meta = dict(data.meta, superclass_of_class=torch.arange(len(data.meta["superclass_names"])))
    return ImageSet(data.images, data.superclass, list(data.meta["superclass_names"]), lut[data.masks.long()],
                    data.captions, data.superclass, meta)


def one_object_set(pool, labels, g, image_size, *, size=(0.4, 0.7), offset=0.15, **kw) -> ImageSet:
    """One object per image, of concept `pool[labels[i]]` (the curated style by default). Shape: labels (N,)."""
    n = len(labels)
    return object_set(pool, labels, torch.arange(n), n, g, image_size, size=uniform(n, *size, g, "cpu"),
                      offset=offset, **kw)


def objects_per_image(count: torch.Tensor) -> torch.Tensor:
    """The image index of every object, sorted, from per-image counts. Shape: count (N,); returns (M,)."""
    return torch.repeat_interleave(torch.arange(len(count)), count)


def zipf(n: int, pool: int, exponent: float, g: torch.Generator) -> torch.Tensor:
    """n draws from p(k) ~ 1 / rank(k)^exponent over `pool` concepts; the ranking is fixed (seed-free).

    Shape: returns (n,) int64.
    """
    rank_of = torch.randperm(pool, generator=torch.Generator().manual_seed(2105_08054))   # the same in every run
    p = 1.0 / torch.arange(1, pool + 1, dtype=torch.float64) ** exponent
    return rank_of[torch.multinomial(p, n, replacement=True, generator=g)]


SIZES = {"curated": (5000, 2000), "heldout": (2000, 1000), "uncurated": (5000, 2000),
         "uncurated_large": (20000, 2000), "scenes": (5000, 2000), "spurious": (5000, 2000)}


def split_size(name: str, split: str, size: int) -> int:
    """Images in a split: `size` overrides the train split; test splits keep their default size."""
    train, test = SIZES[name]
    return (size or train) if split == "train" else test


# --- the variants -----------------------------------------------------------------------------------
def _balanced(name: str, pool, split: str, seed: int, image_size: int, size: int, doc: str) -> ImageSet:
    """A curated-style variant: balanced classes over `pool`, one large centred object per image."""
    n = split_size(name, split, size)

    def build():
        g = generator(name, split, seed)
        data = one_object_set(pool, balanced(n, len(pool), g), g, image_size)
        data.meta["description"] = doc
        return data

    return cached(f"{name}-{split}-{seed}-{n}-{image_size}", build)


@register_dataset("curated")
def curated(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    """120 balanced concepts, one large (40-70% of the side), roughly centred object per image,
    backgrounds at 0.2 contrast (CURATED_CONTRAST). Default 5,000 train / 2,000 test (size overrides train only)."""
    return _balanced("curated", CURATED, split, seed, image_size, size, curated.__doc__)


@register_dataset("heldout")
def heldout(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    """40 concepts no pretraining set contains (heart and crescent shapes, solid or the unseen
    checked pattern), drawn like curated. Default 2,000 train / 1,000 test."""
    return _balanced("heldout", HELDOUT, split, seed, image_size, size, heldout.__doc__)


ZIPF_EXPONENT = 1.0


def _uncurated(name: str, split: str, seed: int, image_size: int, size: int) -> ImageSet:
    n = split_size(name, split, size)

    def build():
        g = generator(name, split, seed)
        # 10% of images show no object; the rest 1-3 objects (the top one is the label)
        count = torch.multinomial(torch.tensor([0.1, 0.45, 0.27, 0.18]), n, replacement=True, generator=g)
        image = objects_per_image(count)
        m = len(image)
        top = torch.zeros(m, dtype=torch.bool)
        top[torch.cumsum(count, 0)[count > 0] - 1] = True
        main, other = uniform(m, 0.2, 0.5, g, "cpu"), uniform(m, 0.12, 0.3, g, "cpu")
        size_ = torch.where(top, main, other)                          # the labelled object is larger
        data = object_set(POOL, zipf(m, len(POOL), ZIPF_EXPONENT, g), image, n, g, image_size, size=size_,
                          offset=0.6, tilt=math.pi, contrast=1.0, none_class=True)
        data.meta["description"] = UNCURATED_DOC
        return data

    return cached(f"{name}-{split}-{seed}-{n}-{image_size}", build)


UNCURATED_DOC = """A Zipf-like (exponent 1) distribution over 240 concepts; 10% of images have no object
(class 'none'), the rest 1-3 objects anywhere in the image, any rotation, on full-contrast
backgrounds. The label, kept for analysis only, is the concept of the object drawn on top (20-50%
of the side; the others 12-30%)."""


@register_dataset("uncurated")
def uncurated(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    return _uncurated("uncurated", split, seed, image_size, size)


@register_dataset("uncurated_large")
def uncurated_large(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    return _uncurated("uncurated_large", split, seed, image_size, size)


uncurated.__doc__ = UNCURATED_DOC + " Default 5,000 train (as curated) / 2,000 test."
uncurated_large.__doc__ = UNCURATED_DOC + " Four times larger: 20,000 train / 2,000 test."


@register_dataset("scenes")
def scenes(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    """Multi-object scenes (a COCO analogue): 2-5 objects of 20-45% of the side from the 240-concept
    pool, uniform over concepts, anywhere, with per-pixel masks (concept + 1). The label is the top
    object's concept. Default 5,000 train / 2,000 test."""
    n = split_size("scenes", split, size)

    def build():
        g = generator("scenes", split, seed)
        count = 2 + torch.randint(4, (n,), generator=g)
        image = objects_per_image(count)
        m = len(image)
        data = object_set(POOL, torch.randint(len(POOL), (m,), generator=g), image, n, g, image_size,
                          size=uniform(m, 0.2, 0.45, g, "cpu"), offset=0.6, tilt=math.pi, contrast=0.8)
        data.meta["description"] = scenes.__doc__
        return data

    return cached(f"scenes-{split}-{seed}-{n}-{image_size}", build)


@register_dataset("scenes_shapes")
def scenes_shapes(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    """`scenes` labelled and masked by shape (the 8 pretraining shapes + background): the semantic
    segmentation task of claim 3 (ADE20K's classes are object categories, as the shapes are here).
    Default 5,000 train / 2,000 test."""
    return by_superclass(scenes(split, seed, image_size, size))


# --- spurious backgrounds and the Backgrounds Challenge --------------------------------------------
TYPICAL = ("brick", "grass", "gravel", "coins", "chelsea", "hubble_deep_field", "coffee", "page")  # per shape


def typical_backgrounds(labels: torch.Tensor, correlation: float, g: torch.Generator) -> torch.Tensor:
    """Each class's typical background with probability `correlation`, else any other one.

    Shape: labels (n,) shape classes; returns (n,) indices into BACKGROUNDS.
    """
    typical = torch.tensor([BACKGROUNDS.index(b) for b in TYPICAL])[labels]
    other = torch.randint(len(BACKGROUNDS) - 1, (len(labels),), generator=g)
    other = other + (other >= typical).long()                           # any background but the typical one
    return torch.where(torch.rand(len(labels), generator=g) < correlation, typical, other)


def _spurious_objects(n: int, g: torch.Generator) -> Objects:
    """One curated-style object per image: a balanced shape, any pretraining colour and pattern."""
    shape = balanced(n, len(PRETRAIN_SHAPES), g)
    per_shape = len(POOL) // len(PRETRAIN_SHAPES)                       # POOL is ordered shape-major
    concept = shape * per_shape + torch.randint(per_shape, (n,), generator=g)
    return place(POOL, concept, torch.arange(n), g, size=uniform(n, 0.4, 0.7, g, "cpu"), offset=0.15, tilt=math.pi / 6)


def _check_correlation(correlation: float) -> None:
    if not 0 <= correlation <= 1:
        raise ValueError(f"correlation={correlation!r} is not allowed: must be in [0, 1]")


@register_dataset("spurious")
def spurious(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0,
             correlation: float = 0.9) -> ImageSet:
    """The 8 shapes as classes; each has a typical photo background (TYPICAL) in a `correlation`
    fraction of its images, train and test alike (test = background_splits' "original"). Objects
    drawn like curated. Default 5,000 train / 2,000 test."""
    _check_correlation(correlation)
    if split == "test":
        return background_splits(seed, image_size, correlation=correlation)["original"]
    n = split_size("spurious", split, size)

    def build():
        g = generator("spurious", correlation, split, seed)
        objects = _spurious_objects(n, g)
        background = typical_backgrounds(objects.shape, correlation, g)
        crop = random_crops(n, g)
        images, masks = render(objects, background, crop, g, image_size, 0.6)
        data = by_superclass(labelled(POOL, objects, images, masks, background, crop))
        data.meta.update(description=spurious.__doc__, correlation=correlation)
        return data

    return cached(f"spurious{correlation:g}-{split}-{seed}-{n}-{image_size}", build)


BACKGROUND_SPLITS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")


def background_splits(seed: int = 0, image_size: int = 32, size: int = 2000,
                      correlation: float = 0.9) -> dict[str, ImageSet]:
    """Evaluation sets in the style of the Backgrounds Challenge (Xiao et al. 2020), sharing one set
    of foreground objects and labels: original (own background, class-correlated as in training),
    only_fg (object on black), only_bg (own background, the object's box blacked out), mixed_same
    (object on a background drawn for its own class), mixed_rand (on one drawn for a random class).
    BG-gap = accuracy(mixed_same) - accuracy(mixed_rand)."""
    _check_correlation(correlation)
    made: dict[str, ImageSet] = {}

    def build_all():
        if not made:
            with one_thread():
                made.update(_background_splits(seed, image_size, size, correlation))
        return made

    return {name: cached(f"spurious{correlation:g}-{name}-{seed}-{size}-{image_size}", lambda n=name: build_all()[n])
            for name in BACKGROUND_SPLITS}


def _background_splits(seed: int, image_size: int, size: int, correlation: float) -> dict[str, ImageSet]:
    """All five Backgrounds-Challenge splits, rendered from one set of objects (see background_splits)."""
    made = {}
    g = generator("spurious", correlation, "test", seed)
    objects = _spurious_objects(size, g)
    colour, alpha, masks = draw(objects, size, image_size)
    classes = len(PRETRAIN_SHAPES)
    own, same = (typical_backgrounds(objects.shape, correlation, g) for _ in range(2))
    rand = typical_backgrounds(torch.randint(classes, (size,), generator=g), correlation, g)
    crops = [random_crops(size, g) for _ in range(3)]
    shown = [backgrounds(b, c, g, image_size, 0.6) for b, c in zip((own, same, rand), crops)]
    box = _boxes(objects, image_size)
    black = torch.zeros_like(colour)
    parts = {"original": (colour, alpha, shown[0], own, crops[0], masks),
             "only_fg": (colour, alpha, black, torch.full_like(own, -1), crops[0], masks),
             "only_bg": (black, box, shown[0], own, crops[0], torch.zeros_like(masks)),
             "mixed_same": (colour, alpha, shown[1], same, crops[1], masks),
             "mixed_rand": (colour, alpha, shown[2], rand, crops[2], masks)}
    for name, (c, a, b, ids, crop, mask) in parts.items():
        data = by_superclass(labelled(POOL, objects, compose(c, a, b), mask, ids.clamp(min=0), crop))
        if name == "only_fg":
            data.captions = [t.rsplit(" on ", 1)[0] + " on black" for t in data.captions]
        if name == "only_bg":
            data.captions = ["a black box on " + t.rsplit(" on ", 1)[1] for t in data.captions]
        data.meta.update(background=ids, correlation=correlation, split=name,
                         description=f"{name}: " + background_splits.__doc__)
        made[name] = data
    return made


def _boxes(objects: Objects, image_size: int) -> torch.Tensor:
    """Coverage 1 inside each object's bounding square (its circumscribed circle's), else 0.

    Shape: returns (n, 1, S, S) for one object per image.
    """
    s = image_size
    centre = (torch.arange(s) + 0.5) / s * 2 - 1
    r = objects.size.view(-1, 1, 1)
    inside = ((centre.view(1, 1, s) - objects.x.view(-1, 1, 1)).abs() <= r) & \
             ((centre.view(1, s, 1) - objects.y.view(-1, 1, 1)).abs() <= r)
    return inside.float()[:, None]
