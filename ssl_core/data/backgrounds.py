"""The embedded world's backgrounds: crops of the photographs scikit-image ships, or procedural textures."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


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
