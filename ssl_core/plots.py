"""One figure style for every notebook, and one way to save figures."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

FIGURES = Path(__file__).resolve().parents[1] / "figures"
METHOD_COLORS = dict(zip(
    ["supervised", "sl_mlp", "simclr", "dcl", "dclw", "moclr", "byol", "dino", "mae", "clip", "dnc", "random"],
    sns.color_palette("tab10", 10) + [(0.3, 0.3, 0.3), (0.6, 0.6, 0.6)]))


def set_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def figures_dir(preset: str = "default") -> Path:
    """figures/ for the default preset (the committed reference set); figures/<preset>/ otherwise,
    so a smoke or paper run never overwrites the reference figures."""
    return FIGURES if preset == "default" else FIGURES / preset


def save_figure(fig: plt.Figure, name: str, preset: str = "default") -> Path:
    """Write `fig` as <figures_dir(preset)>/<name>.png and .pdf; return the PNG path."""
    folder = figures_dir(preset)
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(folder / f"{name}.{ext}", metadata={"CreationDate": None} if ext == "pdf" else None)
    return folder / f"{name}.png"
