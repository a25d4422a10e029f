"""The embedded object world: shapes x colours x patterns drawn on patches of real photographs.

A concept is one (shape, colour, pattern) triple; its superclass is the shape. Images are rendered
for whole batches at once: every object is a signed-distance function evaluated on one coordinate
grid (anti-aliased by its distance in pixels), backgrounds are crops of the photographs that
scikit-image ships (one `grid_sample` over an atlas of them) or procedural textures. Every draw
comes from one seeded `torch.Generator`, so a (name, split, seed) gives the same bits in any
process; results are cached as uint8 under `cache_dir()/data`.

Variants (each registered by name, see the builders at the end):
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

import contextlib
import functools
import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssl_core.data import ImageSet, cache_dir, register_dataset
from ssl_core.data.views import uniform
from ssl_core.io import save_atomic

VERSION = 4   # bump when rendering changes, so cached files from older code are regenerated
# Backgrounds of the curated-style sets (curated, heldout, the suite), scaled toward grey. At 0.6 SimCLR learnt the
# backgrounds instead of the objects' shapes (32 epochs: shape probed at 35% against colour's 99%; linear on the
# concepts 50% at 0.6, 66% at 0.3, 72% at 0.2, 90% on plain grey); `uncurated` keeps full contrast (1.0),
# `scenes` 0.8, and `spurious` 0.6, where the background is the point.
CURATED_CONTRAST = 0.2

# --- the concept tables ---------------------------------------------------------------------
# name: (kind, parameters); every shape fits the unit circle of its object frame (y up).
SHAPES = {
    "circle": ("circle", {}),
    "square": ("polygon", dict(n=4, a0=0.0, rho=0.95)),
    "triangle": ("polygon", dict(n=3, a0=-math.pi / 2, rho=1.0)),
    "diamond": ("polygon", dict(n=4, a0=math.pi / 4, rho=1.0, aspect=0.62)),
    "hexagon": ("polygon", dict(n=6, a0=0.0, rho=0.95)),
    "star": ("star", dict(n=5, inner=0.45)),
    "cross": ("cross", {}),
    "ring": ("ring", {}),
    # never in a pretraining set: the held-out concepts
    "heart": ("heart", {}),
    "crescent": ("crescent", {}),
    # only in transfer tasks (fine-grained variants, orientation)
    "pentagon": ("polygon", dict(n=5, a0=-math.pi / 2, rho=0.95)),
    "heptagon": ("polygon", dict(n=7, a0=-math.pi / 2, rho=0.95)),
    "octagon": ("polygon", dict(n=8, a0=0.0, rho=0.95)),
    "4-point star": ("star", dict(n=4, inner=0.45)),
    "6-point star": ("star", dict(n=6, inner=0.5)),
    "7-point star": ("star", dict(n=7, inner=0.55)),
    "arrow": ("arrow", {}),
}
SHAPE_NAMES = tuple(SHAPES)
PRETRAIN_SHAPES = SHAPE_NAMES[:8]
HELDOUT_SHAPES = ("heart", "crescent")
COLOURS = {
    "red": (0.86, 0.10, 0.10), "orange": (1.00, 0.55, 0.05), "yellow": (0.98, 0.88, 0.10),
    "green": (0.15, 0.70, 0.20), "cyan": (0.10, 0.80, 0.90), "blue": (0.12, 0.30, 0.90),
    "purple": (0.55, 0.18, 0.80), "pink": (1.00, 0.45, 0.75), "white": (0.96, 0.96, 0.96),
    "brown": (0.50, 0.30, 0.12),
}
COLOUR_NAMES = tuple(COLOURS)
PATTERNS = ("solid", "striped", "dotted", "checked")
PRETRAIN_PATTERNS = PATTERNS[:3]   # "checked" appears only in held-out concepts
PERIOD = 0.55   # pattern period, in object radii
SHADE = 0.4     # a pattern's second colour is the object colour times this


@dataclass(frozen=True)
class Concept:
    shape: str
    colour: str
    pattern: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.pattern} {self.shape}"


def make_pool(shapes, patterns, keep=lambda s, c, p: True) -> tuple[Concept, ...]:
    """Every (shape, colour, pattern) concept of the given shapes and patterns that `keep` accepts."""
    return tuple(Concept(SHAPE_NAMES[s], COLOUR_NAMES[c], PATTERNS[p])
                 for s in map(SHAPE_NAMES.index, shapes) for c in range(len(COLOURS))
                 for p in map(PATTERNS.index, patterns) if keep(s, c, p))


POOL = make_pool(PRETRAIN_SHAPES, PRETRAIN_PATTERNS)                          # 240 concepts, uncurated
CURATED = make_pool(PRETRAIN_SHAPES, PRETRAIN_PATTERNS, lambda s, c, p: (s + c + p) % 2 == 0)  # 120
HELDOUT = make_pool(HELDOUT_SHAPES, ("solid", "checked"))                      # 40, never pretrained on

# --- backgrounds ------------------------------------------------------------------------------
# skimage.data images that ship inside the package (no download), and how captions name them.
PHOTOS = {
    "astronaut": "a portrait", "brick": "bricks", "camera": "a street", "chelsea": "cat fur",
    "coffee": "a coffee cup", "coins": "coins", "grass": "grass", "gravel": "gravel",
    "hubble_deep_field": "stars", "immunohistochemistry": "tissue", "moon": "the moon",
    "motorcycle": "a motorcycle", "page": "paper", "rocket": "a rocket",
}
TEXTURES = {"clouds": "clouds", "gradient": "a gradient", "waves": "waves"}
BACKGROUNDS = tuple(PHOTOS) + tuple(TEXTURES)
BACKGROUND_PHRASES = tuple(PHOTOS.values()) + tuple(TEXTURES.values())
GREY = 0.5


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


@functools.lru_cache(maxsize=4)
def photo_atlas(tile: int) -> torch.Tensor:
    """All photos, centre-cropped square and area-downsampled to `tile` pixels, side by side.

    Shape: returns (3, tile, len(PHOTOS) * tile) float in [0, 1].
    """
    tiles = [torch.from_numpy(_photo(name)).permute(2, 0, 1)[None].float() / 255 for name in PHOTOS]
    tiles = [F.interpolate(t, size=(tile, tile), mode="area") for t in tiles]   # area = anti-aliased
    return torch.cat(tiles, dim=3)[0].contiguous()


def photo_crops(photo: torch.Tensor, crop: torch.Tensor, image_size: int) -> torch.Tensor:
    """Square crops of the photos, resampled to `image_size`, all in one `grid_sample`.

    crop rows are (side, left, top, flip) as fractions of a photo's side (flip is 0 or 1).
    Shape: photo (n,) int64; crop (n, 4); returns (n, 3, image_size, image_size) float.
    """
    n, s = len(photo), image_size
    tile = 3 * s                         # crops span 1-2.4 tiles' pixels per output pixel: little aliasing
    atlas = photo_atlas(tile)
    side, left, top, flip = crop.unbind(1)
    t = (torch.arange(s) + 0.5) / s                                        # (s,) pixel centres
    tx = torch.where(flip[:, None] > 0, 1 - t, t)                          # (n, s)
    ax = (photo[:, None] + left[:, None] + side[:, None] * tx) / len(PHOTOS) * 2 - 1
    ay = (top[:, None] + side[:, None] * t) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(ax[:, None, :], ay[:, :, None]), -1)  # (n, s, s, 2)
    out = F.grid_sample(atlas[None], grid.reshape(1, n * s, s, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)        # (1, 3, n*s, s)
    return out.view(3, n, s, s).transpose(0, 1)


def random_crops(n: int, g: torch.Generator, scale=(0.33, 0.8), rows=(0.0, 1.0)) -> torch.Tensor:
    """Crop parameters (side, left, top, flip) with side in `scale` and the crop inside `rows`.

    Shape: returns (n, 4).
    """
    side = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=g)
    side = side.clamp(max=rows[1] - rows[0])
    left = (1 - side) * torch.rand(n, generator=g)
    top = rows[0] + (rows[1] - rows[0] - side) * torch.rand(n, generator=g)
    flip = (torch.rand(n, generator=g) < 0.5).float()
    return torch.stack([side, left, top, flip], 1)


def textures(kind: torch.Tensor, g: torch.Generator, image_size: int) -> torch.Tensor:
    """Procedural backgrounds: 0 clouds (value noise), 1 gradient, 2 waves, in muted colours.

    Shape: kind (n,) int64; returns (n, 3, image_size, image_size) float in [0, 1].
    """
    n, s = len(kind), image_size
    c1, c2 = 0.2 + 0.6 * torch.rand(2, n, 3, 1, 1, generator=g)
    coarse = torch.rand(n, 1, 4, 4, generator=g)
    fine = torch.rand(n, 1, 9, 9, generator=g)
    angle = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    freq = 1.5 + 3 * torch.rand(n, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    y, x = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    along = x * angle.cos() + y * angle.sin()                                # (n, s, s)
    up = lambda z: F.interpolate(z, size=(s, s), mode="bicubic", align_corners=True)
    clouds = (up(coarse) + 0.5 * up(fine)).squeeze(1) / 1.5
    gradient = (along + 1.5) / 3
    waves = 0.5 + 0.5 * torch.sin(math.pi * freq * along + phase)
    t = torch.where(kind[:, None, None] == 0, clouds, torch.where(kind[:, None, None] == 1, gradient, waves))
    return (c1 + (c2 - c1) * t.clamp(0, 1)[:, None]).clamp(0, 1)


def backgrounds(background: torch.Tensor, crop: torch.Tensor, g: torch.Generator, image_size: int,
                contrast: float) -> torch.Tensor:
    """Background `background[i]` (an index into BACKGROUNDS) for every image, contrast scaled toward grey.

    Shape: background (n,) int64; crop (n, 4); returns (n, 3, S, S) float in [0, 1].
    """
    n, s, k = len(background), image_size, len(PHOTOS)
    out = torch.empty(n, 3, s, s)
    photo, texture = (background < k).nonzero()[:, 0], (background >= k).nonzero()[:, 0]
    if len(photo):
        out.index_copy_(0, photo, photo_crops(background[photo], crop[photo], s))
    if len(texture):
        out.index_copy_(0, texture, textures(background[texture] - k, g, s))
    return out.sub_(GREY).mul_(contrast).add_(GREY)


# --- objects as signed distances ----------------------------------------------------------------
def _sector(theta, n):
    """Angle folded into one of n sectors, centred on 0. Shape: like theta."""
    width = 2 * math.pi / n
    return torch.remainder(theta + width / 2, width) - width / 2


def _polygon(u, v, n, a0, rho, aspect):
    """Exact distance to a regular n-gon (circumradius rho), folded into the sector of one edge."""
    u = u / aspect
    phi = _sector(torch.atan2(v, u) - a0, n)
    r = torch.hypot(u, v)
    across = r * torch.cos(phi) - rho * math.cos(math.pi / n)                # beyond the edge's line
    along = (r * torch.sin(phi)).abs() - rho * math.sin(math.pi / n)         # past one of its ends
    return torch.where(along > 0, torch.hypot(across, along), across)


def _segment(px, py, ax, ay, bx, by):
    """Distance from points p to segment a-b, signed by the side of its line (+ = left of a->b)."""
    ex, ey = bx - ax, by - ay
    t = (((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    dist = torch.hypot(px - ax - t * ex, py - ay - t * ey)
    return torch.where((px - ax) * ey - (py - ay) * ex > 0, dist, -dist)


def _star(u, v, n, inner):
    """Exact distance to an n-point star: fold into half a point, measure to the tip-to-inner edge."""
    phi = _sector(torch.atan2(v, u) - math.pi / 2, n).abs()                 # 0 at a tip
    r = torch.hypot(u, v)
    return _segment(r * phi.cos(), r * phi.sin(), 1.0, 0.0,
                    inner * math.cos(math.pi / n), inner * math.sin(math.pi / n))


def _crescent(u, v, ra=0.92, rb=0.72, cx=0.45):
    """A disc minus a shifted disc; near the two horns the distance is to the horn's tip."""
    v = v.abs()
    cut = torch.maximum(torch.hypot(u, v) - ra, rb - torch.hypot(u - cx, v))
    tx = (ra * ra - rb * rb + cx * cx) / (2 * cx)                          # a horn tip (tx, ty)
    ty = math.sqrt(ra * ra - tx * tx)
    qx, qy = u - tx, v - ty
    # between the outward normals of the two circles at the tip, the tip is the nearest point
    beyond = (tx * qy - ty * qx < 0) & (qx * -ty - qy * (cx - tx) < 0)
    return torch.where(beyond, torch.hypot(qx, qy), cut)


def _arrow(u, v):
    shaft = torch.maximum((u + 0.3).abs() - 0.5, v.abs() - 0.18)
    nx, ny = 0.55 / math.hypot(0.55, 0.8), 0.8 / math.hypot(0.55, 0.8)
    head = torch.maximum(torch.maximum(0.1 - u, (u - 0.9) * nx + v * ny), (u - 0.9) * nx - v * ny)
    return torch.minimum(shaft, head)


def _heart(u, v):
    s, c0 = 0.55, -0.08
    a, b = (u + v - c0) / math.sqrt(2), (v - c0 - u) / math.sqrt(2)          # 45-degree frame
    square = torch.maximum(a.abs(), b.abs()) - s
    cx, cy = s / math.sqrt(2), c0 + s / math.sqrt(2)
    lobes = torch.minimum(torch.hypot(u - cx, v - cy), torch.hypot(u + cx, v - cy)) - s
    return torch.minimum(square, lobes)


def _sdf(kind: str, params: dict, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of shape `kind`, in object radii. Shape: u, v (M, H, W)."""
    if kind == "circle":
        return torch.hypot(u, v) - 0.88
    if kind == "polygon":
        return _polygon(u, v, params["n"], params["a0"], params["rho"], params.get("aspect", 1.0))
    if kind == "star":
        return _star(u, v, params["n"], params["inner"])
    if kind == "cross":
        return torch.minimum(torch.maximum(u.abs() - 0.28, v.abs() - 0.9),
                             torch.maximum(u.abs() - 0.9, v.abs() - 0.28))
    if kind == "ring":
        return (torch.hypot(u, v) - 0.68).abs() - 0.26
    if kind == "heart":
        return _heart(u, v)
    if kind == "crescent":
        return _crescent(u, v)
    return _arrow(u, v)


def _pattern_sdf(pattern: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance to the second-colour region of a pattern (stripes, dots, checks), in object radii.

    Shape: u, v (M, H, W); returns the same.
    """
    eu, ev = u / PERIOD - torch.round(u / PERIOD), v / PERIOD - torch.round(v / PERIOD)   # in [-0.5, 0.5]
    if pattern == "striped":
        return (eu.abs() - 0.25) * PERIOD
    if pattern == "dotted":
        return (torch.hypot(eu, ev) - 0.3) * PERIOD
    odd = (torch.round(u / PERIOD) + torch.round(v / PERIOD)) % 2 == 1          # "checked"
    edge = torch.minimum(0.5 - eu.abs(), 0.5 - ev.abs()) * PERIOD
    return torch.where(odd, -edge, edge)


@dataclass
class Objects:
    """What to draw, one row per object, sorted by image; an image's objects are drawn in row order.

    Shape: every field (M,) except rgb (M, 3); x, y are centres in [-1, 1] (y down); size is the
    object's diameter as a fraction of the image side; angle in radians, counter-clockwise.
    """
    image: torch.Tensor
    shape: torch.Tensor
    pattern: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    size: torch.Tensor
    angle: torch.Tensor
    rgb: torch.Tensor
    value: torch.Tensor   # what the mask holds on this object (class + 1)

    def take(self, index: torch.Tensor) -> "Objects":
        return Objects(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def object_rgb(colour: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each object's colour: its colour name's RGB, with a little brightness and tint variation.

    Shape: colour (M,) int64; returns (M, 3).
    """
    base = torch.tensor(list(COLOURS.values()))[colour]
    gain = 0.85 + 0.25 * torch.rand(len(colour), 1, generator=g)
    tint = 0.08 * (torch.rand(len(colour), 3, generator=g) - 0.5)
    return (base * gain + tint).clamp(0, 1)


def _coverage(o: Objects, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anti-aliased coverage and colour of each object in a square window around it.

    Objects must be grouped by (shape, pattern). Shape: returns alpha (m, w, w), rgb (m, w, w, 3)
    and the window's flat pixel index in its image (m, w, w).
    """
    s = image_size
    w = min(s, int(math.ceil(float(o.size.max()) * s)) + 2)        # every object fits its window
    step = torch.arange(w)
    left = ((o.x + 1) / 2 * s - w / 2).round().long().clamp(0, s - w)
    top = ((o.y + 1) / 2 * s - w / 2).round().long().clamp(0, s - w)
    radius = o.size.view(-1, 1, 1)
    gx = ((left[:, None] + step + 0.5) / s * 2 - 1)[:, None, :]   # (m, 1, w)
    gy = ((top[:, None] + step + 0.5) / s * 2 - 1)[:, :, None]    # (m, w, 1)
    dx, dy = (gx - o.x.view(-1, 1, 1)) / radius, (o.y.view(-1, 1, 1) - gy) / radius   # y up
    cos, sin = o.angle.cos().view(-1, 1, 1), o.angle.sin().view(-1, 1, 1)
    u, v = cos * dx + sin * dy, cos * dy - sin * dx                                    # (m, w, w)
    to_pixels = radius * s / 2                                                          # radii -> pixels
    alpha, second = torch.empty_like(u), torch.zeros_like(u)
    key = o.shape * len(PATTERNS) + o.pattern
    for k in torch.unique_consecutive(key).tolist():
        a, b = torch.searchsorted(key, torch.tensor([k, k + 1])).tolist()
        shape, pattern = SHAPE_NAMES[k // len(PATTERNS)], PATTERNS[k % len(PATTERNS)]
        alpha[a:b] = (0.5 - _sdf(*SHAPES[shape], u[a:b], v[a:b]) * to_pixels[a:b]).clamp_(0, 1)
        if pattern != "solid":
            second[a:b] = (0.5 - _pattern_sdf(pattern, u[a:b], v[a:b]) * to_pixels[a:b]).clamp_(0, 1)
    rgb = o.rgb.view(-1, 1, 1, 3) * (1 - (1 - SHADE) * second).unsqueeze(-1)
    pixel = (top.view(-1, 1, 1) + step.view(1, -1, 1)) * s + left.view(-1, 1, 1) + step.view(1, 1, -1)
    return alpha, rgb, pixel


def draw(objects: Objects, n: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite every image's objects ("over", in order) into a premultiplied colour and a coverage.

    Shape: returns colour (n, 3, S, S) and alpha (n, 1, S, S) float, and mask (n, S, S) uint8.
    """
    s = image_size
    colour, alpha = torch.zeros(n * s * s, 3), torch.zeros(n * s * s)   # channels last, flat pixels
    mask = torch.zeros(n * s * s, dtype=torch.uint8)
    if len(objects.image):
        first = torch.searchsorted(objects.image, objects.image, side="left")
        layer = torch.arange(len(objects.image)) - first                   # rank of an object in its image
        for depth in range(int(layer.max()) + 1):
            at = (layer == depth).nonzero().squeeze(1)
            o = objects.take(at[torch.argsort(objects.shape[at] * len(PATTERNS) + objects.pattern[at], stable=True)])
            a, rgb, pixel = _coverage(o, s)
            index = (o.image.view(-1, 1, 1) * s * s + pixel).flatten()      # no image repeats in one depth
            a = a.flatten()
            rgb = rgb.reshape(-1, 3) * a[:, None]
            value = torch.where(a >= 0.5, o.value.to(torch.uint8).view(-1, 1, 1).expand_as(pixel).flatten(), 0)
            if depth > 0:                                                  # "over" what is already drawn
                keep = 1 - a
                rgb += colour.index_select(0, index) * keep[:, None]
                a = a + alpha.index_select(0, index) * keep
                value = torch.where(value > 0, value, mask.index_select(0, index))
            colour.index_copy_(0, index, rgb)
            alpha.index_copy_(0, index, a)
            mask.index_copy_(0, index, value)
    colour = colour.view(n, s, s, 3).permute(0, 3, 1, 2)
    return colour, alpha.view(n, 1, s, s), mask.view(n, s, s)


def compose(colour: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Objects over a background, quantised to uint8.

    Shape: colour, background (n, 3, S, S); alpha (n, 1, S, S); returns (n, 3, S, S) uint8.
    """
    x = torch.addcmul(colour, background, 1 - alpha)
    return x.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


# Pixels rendered per pass: a pass's float tensors stay below ~13 MB, small enough for the allocator to
# reuse them between passes instead of page-faulting fresh memory (measured 2x at 64x64). The chunk
# depends only on the image size, so random draws never depend on anything else.
CHUNK_PIXELS = 1024 * 32 * 32


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread inside the block. Rendering is many mid-sized elementwise ops; on a
    2-core machine shared with other work, two OpenMP threads made them up to 200x slower (each op
    waits at a barrier for a descheduled thread), while one thread renders 10,000 images in ~1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def render(objects: Objects, background: torch.Tensor, crop: torch.Tensor, g: torch.Generator,
           image_size: int, contrast: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks for a whole set, in chunks of images of a fixed pixel count.

    Shape: background (N,); crop (N, 4); returns images (N, 3, S, S) uint8 and masks (N, S, S) uint8.
    """
    n = len(background)
    chunk = max(1, CHUNK_PIXELS // image_size ** 2)
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    masks = torch.empty(n, image_size, image_size, dtype=torch.uint8)
    with one_thread():
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            lo, hi = torch.searchsorted(objects.image, torch.tensor([start, stop])).tolist()
            part = objects.take(torch.arange(lo, hi))
            part.image = part.image - start
            colour, alpha, masks[start:stop] = draw(part, stop - start, image_size)
            bg = backgrounds(background[start:stop], crop[start:stop], g, image_size, contrast)
            images[start:stop] = compose(colour, alpha, bg)
    return images, masks


# --- captions ---------------------------------------------------------------------------------------
def size_word(size: float) -> str:
    return "tiny " if size < 0.3 else "small " if size < 0.5 else "" if size < 0.62 else "large "


def describe(concept: Concept, size: float) -> str:
    """'a small red striped star', 'an orange ring' (solid objects go without a pattern word)."""
    pattern = "" if concept.pattern == "solid" else concept.pattern + " "
    words = f"{size_word(size)}{concept.colour} {pattern}{concept.shape}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption(objects: list[str], background: int) -> str:
    """'a small red striped star and a tiny blue ring on gravel'; 'an empty view of gravel'."""
    where = BACKGROUND_PHRASES[background]
    return f"{' and '.join(objects)} on {where}" if objects else f"an empty view of {where}"


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
