"""One figure style for every notebook, and one way to save figures: by what produced them."""
from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.text import Text

METHOD_COLORS = dict(zip(
    ["supervised", "sl_mlp", "simclr", "dcl", "dclw", "moclr", "byol", "dino", "mae", "clip", "dnc", "random"],
    sns.color_palette("tab10", 10) + [(0.3, 0.3, 0.3), (0.6, 0.6, 0.6)]))


def set_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def count(n: float, noun: str) -> str:
    """'1 epoch', '0.5 epochs', '3 seeds': a number and its noun, plural unless the number is 1."""
    return f"{n:g} {noun}{'' if n == 1 else 's'}"


def project_dir() -> Path:
    """The project a notebook runs in: the nearest folder at or above the working directory that holds
    notebooks/ (papermill --cwd notebooks and JupyterLab run there), else the working directory; never the
    installed package's location."""
    cwd = Path.cwd().resolve()
    return next((folder for folder in (cwd, *cwd.parents) if (folder / "notebooks").is_dir()), cwd)


def figures_dir(preset: str = "default") -> Path:
    """figures/ for the default preset (the committed reference set); figures/<preset>/ otherwise."""
    root = project_dir() / "figures"
    return root if preset == "default" else root / preset


def outputs_dir(notebook: str, preset: str, overrides: dict) -> Path:
    """Where a notebook run writes its figures and verdict: the preset's folder (figures_dir) when its
    parameters are exactly the preset's; with any other value, figures/custom/<notebook>-<preset>-<knobs>/
    (the full parameters saved beside in params.json), so no run with your own knobs overwrites a reference set."""
    if not overrides:
        return figures_dir(preset)
    def word(value) -> str:
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return re.sub(r"[^A-Za-z0-9.,_]+", "", text)
    name = "-".join([notebook, preset, *(f"{k}{word(v)}" for k, v in sorted(overrides.items()))])
    return project_dir() / "figures" / "custom" / name[:120]


def save_params(folder: Path, params: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(params, indent=1, default=str) + "\n")


def outline(text: Text, renderer) -> np.ndarray:
    """The 4 corners (pixels) of `text` as drawn, rotated with it, 1 pixel inside: matplotlib's window extent of a
    rotated text is the upright box around it, which would make slanted tick labels collide when they do not."""
    box = text.get_window_extent(renderer)
    angle = np.deg2rad(text.get_rotation())
    if np.isclose(np.sin(2 * angle), 0):   # upright or a quarter turn: the box is the text
        angle, size = 0.0, np.array([box.width, box.height])
    else:
        size = np.array(renderer.get_text_width_height_descent(text.get_text(), text.get_fontproperties(), False)[:2])
    half = np.maximum(size / 2 - 1, 0)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    return corners @ rotate.T + [box.x0 + box.width / 2, box.y0 + box.height / 2]


def collide(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex outlines intersect (separating axis theorem: disjoint iff some edge normal parts them)."""
    for poly in (a, b):
        for edge in np.diff(np.vstack([poly, poly[:1]]), axis=0):
            normal = np.array([-edge[1], edge[0]])
            pa, pb = a @ normal, b @ normal
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def overlapping_text(fig: plt.Figure) -> list[tuple[str, str]]:
    """The pairs of visible texts of `fig` (titles, tick and axis labels, legends) that overlap as drawn."""
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    hidden = set()   # labels of ticks outside an axis's view: matplotlib keeps them but draws them nowhere
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if tick.get_loc() is None or not low <= tick.get_loc() <= high:
                    hidden.update((id(tick.label1), id(tick.label2)))
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    outlines = [(t.get_text(), outline(t, renderer)) for t in texts]
    return [(a, b) for (a, out_a), (b, out_b) in itertools.combinations(outlines, 2) if collide(out_a, out_b)]


def save_figure(fig: plt.Figure, name: str, folder: Path) -> Path:
    """Write `fig` as <folder>/<name>.png and .pdf; return the PNG path. Warns "overlapping text" naming the
    texts that collide (`make smoke` fails on that warning)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(folder / f"{name}.{ext}", metadata={"CreationDate": None} if ext == "pdf" else None)
    if overlaps := overlapping_text(fig):
        warnings.warn(f"{name}: overlapping text: " + "; ".join(f"{a!r} / {b!r}" for a, b in overlaps[:5]), stacklevel=2)
    return folder / f"{name}.png"
