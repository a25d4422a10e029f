"""An eight-task transfer suite (claims 1 and 5: Karthik et al. 2021 Fig. 1; SL-MLP's concept generalisation).

Diverse on purpose. Some tasks reward the invariances contrastive augmentation teaches (shape
under changes of colour and position: `concepts`, `shape_variants`, `digits`, `textures`); others
need exactly what it teaches a model to ignore (`colour` against colour jitter, `position` and
`orientation` against crops and flips, `count` against crops). Two tasks are real data:
scikit-learn's handwritten digits and texture patches of scikit-image's photographs.
Every task has a train and a test split; `load_task(name, split, seed, image_size)` or
`load_dataset("suite/<name>", ...)` reaches it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssl_core.checks import choose
from ssl_core.data import SPLITS, ImageSet, register_dataset
from ssl_core.data import render, world
from ssl_core.data.backgrounds import PHOTOS, photo_crops, random_crops
from ssl_core.data.render import COLOUR_NAMES
from ssl_core.data.views import uniform
from ssl_core.data.world import balanced, cached, generator, place

SIZE = (2000, 1000)   # train / test images of every generated task; `size` overrides train
VARIANTS = ("pentagon", "hexagon", "heptagon", "octagon", "4-point star", "star", "6-point star", "7-point star")
TEXTURE_PHOTOS = ("brick", "grass", "gravel", "coins", "chelsea", "hubble_deep_field", "immunohistochemistry", "moon")
DIRECTIONS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")
CELLS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
CELL_CENTRES = (-2 / 3, 0.0, 2 / 3)   # of a 3 x 3 grid, in [-1, 1] image coordinates


def relabel(data: ImageSet, labels: torch.Tensor, class_names, description: str,
            superclass: torch.Tensor | None = None) -> ImageSet:
    """The same images with task labels; every object pixel of an image is marked label + 1."""
    masks = torch.where(data.masks > 0, (labels + 1).to(torch.uint8).view(-1, 1, 1), 0)
    meta = dict(data.meta, description=description)
    meta.pop("superclass_of_class")
    meta.pop("superclass_names")
    return ImageSet(data.images, labels, list(class_names), masks, data.captions, superclass, meta)


def colour(n, g, image_size, split) -> ImageSet:
    pool = render.make_pool(render.PRETRAIN_SHAPES + render.HELDOUT_SHAPES, ("solid", "striped"))
    label = balanced(n, len(COLOUR_NAMES), g)
    per_colour = [torch.tensor([i for i, c in enumerate(pool) if c.colour == name]) for name in COLOUR_NAMES]
    choice = torch.randint(len(per_colour[0]), (n,), generator=g)
    concept = torch.stack(per_colour)[label, choice]
    data = world.one_object_set(pool, concept, g, image_size)
    return relabel(data, label, COLOUR_NAMES, SUITE["colour"][0])


def position(n, g, image_size, split) -> ImageSet:
    label = balanced(n, len(CELLS), g)
    concept = torch.randint(len(render.POOL), (n,), generator=g)
    objects = place(render.POOL, concept, torch.arange(n), g, size=uniform(n, 0.2, 0.3, g, "cpu"), offset=0.1,
                    tilt=math.pi)
    centres = torch.tensor(CELL_CENTRES)
    objects.x = objects.x + centres[label % 3]
    objects.y = objects.y + centres[label // 3]
    return relabel(world.draw_set(render.POOL, objects, n, g, image_size), label, CELLS, SUITE["position"][0])


def count(n, g, image_size, split) -> ImageSet:
    label = balanced(n, 4, g)
    k = label + 1
    image = world.objects_per_image(k)
    m = len(image)
    cells = torch.rand(n, 9, generator=g).argsort(1)                     # distinct cells: no overlaps
    rank = torch.arange(m) - (torch.cumsum(k, 0) - k)[image]
    cell = cells[image, rank]
    objects = place(render.POOL, torch.randint(len(render.POOL), (m,), generator=g), image, g,
                    size=uniform(m, 0.15, 0.24, g, "cpu"), offset=0.05, tilt=math.pi)   # never touching
    centres = torch.tensor(CELL_CENTRES)
    objects.x = objects.x + centres[cell % 3]
    objects.y = objects.y + centres[cell // 3]
    data = world.draw_set(render.POOL, objects, n, g, image_size)
    return relabel(data, label, ["1", "2", "3", "4"], SUITE["count"][0])


def shape_variants(n, g, image_size, split) -> ImageSet:
    pool = render.make_pool(VARIANTS, ("solid", "striped", "dotted"))
    label = balanced(n, len(VARIANTS), g)
    per_shape = len(pool) // len(VARIANTS)                                # the pool is ordered shape-major
    concept = label * per_shape + torch.randint(per_shape, (n,), generator=g)
    data = world.one_object_set(pool, concept, g, image_size, size=(0.5, 0.75), tilt=math.pi)
    family = (label >= 4).long()                                         # polygons, stars
    return relabel(data, label, VARIANTS, SUITE["shape_variants"][0], family)


def orientation(n, g, image_size, split) -> ImageSet:
    pool = render.make_pool(("arrow",), ("solid",))
    label = balanced(n, len(DIRECTIONS), g)
    objects = place(pool, torch.randint(len(pool), (n,), generator=g), torch.arange(n), g,
                    size=uniform(n, 0.5, 0.75, g, "cpu"), offset=0.15, tilt=math.radians(8))
    objects.angle = objects.angle + label * math.pi / 4
    return relabel(world.draw_set(pool, objects, n, g, image_size), label, DIRECTIONS, SUITE["orientation"][0])


def textures(n, g, image_size, split) -> ImageSet:
    label = balanced(n, len(TEXTURE_PHOTOS), g)
    photo = torch.tensor([list(PHOTOS).index(p) for p in TEXTURE_PHOTOS])[label]
    rows = (0.0, 2 / 3) if split == "train" else (2 / 3, 1.0)            # disjoint parts of each photo
    crop = random_crops(n, g, scale=(0.2, 1 / 3), rows=rows)
    x = photo_crops(photo, crop, image_size)
    images = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    names = [PHOTOS[p] for p in TEXTURE_PHOTOS]
    meta = dict(crop=crop, description=SUITE["textures"][0])
    return ImageSet(images, label, names, captions=[f"a photo of {names[k]}" for k in label.tolist()], meta=meta)


def digits(split: str, seed: int, image_size: int) -> ImageSet:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels), upsampled; 2/3 train, 1/3 test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = torch.randperm(len(y), generator=generator("digits", seed))
    cut = 2 * len(y) // 3
    index = order[:cut] if split == "train" else order[cut:]
    small = torch.from_numpy(x).float().view(-1, 1, 8, 8)[index] / 16
    big = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (big * 255).round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(y)[index].long()
    names = [str(d) for d in range(10)]
    return ImageSet(images, labels, names, captions=[f"a handwritten {d}" for d in labels.tolist()],
                    meta=dict(description=SUITE["digits"][0]))


def generated(name: str, make):
    """A cached builder(split, seed, image_size, size) for a task drawn by make(n, g, image_size, split)."""
    def build(split: str, seed: int, image_size: int, size: int) -> ImageSet:
        n = (size or SIZE[0]) if split == "train" else SIZE[1]
        key = f"suite-{name}-{split}-{seed}-{n}-{image_size}"
        return cached(key, lambda: make(n, generator("suite", name, split, seed), image_size, split))
    return build


# name: (one-line description, builder(split, seed, image_size, size))
SUITE = {
    "concepts": ("held-out concepts (heart, crescent; solid or checked) never seen in pretraining: "
                 "shape and colour in new combinations (SL-MLP's concept generalisation); the `heldout` set",
                 world.heldout),
    "digits": ("scikit-learn's handwritten digits, real data, upsampled to RGB: shape under stroke changes",
               lambda split, seed, image_size, size: digits(split, seed, image_size)),
    "textures": ("texture patches of 8 real photographs (bricks, grass, gravel, coins, fur, stars, tissue, "
                 "moon); train and test from disjoint parts of each photo", generated("textures", textures)),
    "count": ("how many objects (1-4) an image holds: random crops change the answer", generated("count", count)),
    "colour": ("the object's colour (10 classes) whatever its shape: colour jitter teaches to ignore it",
               generated("colour", colour)),
    "position": ("which cell of a 3x3 grid holds the object: crops and flips teach to ignore it",
                 generated("position", position)),
    "shape_variants": ("fine-grained shapes: 5-8-sided polygons and 4-7-point stars in any colour and "
                       "rotation: shape under colour change", generated("shape_variants", shape_variants)),
    "orientation": ("which of 8 directions an arrow points: horizontal flips swap east and west",
                    generated("orientation", orientation)),
}


def load_task(name: str, split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
    """Split `split` of suite task `name`: 2,000 train (or `size`) / 1,000 test images; digits 1,198 / 599."""
    choose("task", name, SUITE)
    choose("split", split, SPLITS)
    return SUITE[name][1](split, seed, image_size, size)


def _register(name: str) -> None:
    @register_dataset(f"suite/{name}")
    def task(split: str = "train", seed: int = 0, image_size: int = 32, size: int = 0) -> ImageSet:
        return load_task(name, split, seed, image_size, size)

    task.__doc__ = SUITE[name][0]


for _name in SUITE:
    _register(_name)
