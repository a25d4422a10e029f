"""The embedded world's renderer: shapes, colours and patterns as signed distances, drawn over backgrounds.

A concept is one (shape, colour, pattern) triple; its superclass is the shape. Images are rendered
for whole batches at once: every object is a signed-distance function evaluated on one coordinate
grid (anti-aliased by its distance in pixels), over backgrounds from `ssl_core.data.backgrounds`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ssl_core.data.backgrounds import BACKGROUND_PHRASES, backgrounds

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
