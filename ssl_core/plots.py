"""One figure style for every notebook, and one way to save figures: by what produced them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

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


def save_figure(fig: plt.Figure, name: str, folder: Path) -> Path:
    """Write `fig` as <folder>/<name>.png and .pdf; return the PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(folder / f"{name}.{ext}", metadata={"CreationDate": None} if ext == "pdf" else None)
    return folder / f"{name}.png"
