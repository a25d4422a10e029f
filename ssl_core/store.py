"""The results store: one small JSON file per finished run, committed with the project.

    results/<cfg.key()>.json   {"key", "config", "record": provenance and training record (run.json),
                                "rows": {"<evaluation>@<dataset>": tidy rows},
                                "earlier_weights": {"<evaluation>@<dataset>": model_sha256}   (when any)}
    results/weights/<cfg.key()>.pt   while `make evidence` runs: the weights of a run it trained (keep_weights)

The store is read before the cache: a stored run is never retrained and its stored rows are never
recomputed, so `make figures` needs no weights. It holds none once `make evidence` has finished; a panel
that needs a model stores the rows it computes from it. A run trained again for an evaluation it lacks (on another machine kind: to
other weights) gets the new record; the rows computed from its earlier weights stay, named in "earlier_weights". Files are independent: stores built in parts on several
machines merge by copying the files together.

$SSL_CORE_STORE says what a process does with it: "read" (the default), "write" (read, and add every
run and row computed: `make evidence`), or "off" (neither: `make audit` recomputes from scratch).
$SSL_CORE_RESULTS moves it (default: results/ in the project).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ssl_core.config import RunConfig
from ssl_core.checks import choose
from ssl_core.data.render import VERSION as WORLD_VERSION
from ssl_core.io import copy_atomic, locked, read_json, write_json

MODES = ("read", "write", "off")


def mode() -> str:
    value = os.environ.get("SSL_CORE_STORE", "read")
    choose("SSL_CORE_STORE", value, MODES)
    return value


def store_dir() -> Path:
    root = os.environ.get("SSL_CORE_RESULTS") or Path(__file__).resolve().parents[1] / "results"
    return Path(root)


def entry_path(key: str) -> Path:
    return store_dir() / f"{key}.json"


def entry(cfg: RunConfig) -> dict | None:
    """The stored entry of run `cfg`, or None (also when the store is off, or the entry was computed on another
    version of the embedded world: the runs of a changed world are recomputed)."""
    if mode() == "off":
        return None
    found = read_json(entry_path(cfg.key()))
    return found if found is not None and found["record"].get("world_version") == WORLD_VERSION else None


def stored_record(cfg: RunConfig) -> dict | None:
    found = entry(cfg)
    return None if found is None else found["record"]


def stored_rows(cfg: RunConfig, eval_id: str) -> list[dict] | None:
    found = entry(cfg)
    return None if found is None else found["rows"].get(eval_id)


def add(cfg: RunConfig, record: dict, eval_id: str | None = None, rows: list[dict] | None = None) -> None:
    """Add run `cfg` (its record) and, optionally, the rows of one evaluation, when the store is writable.
    Rows already stored from other weights than `record`'s keep the sha256 of theirs in "earlier_weights"."""
    if mode() != "write":
        return
    key = cfg.key()
    with locked(store_dir() / ".locks" / f"{key}.lock"):
        found = read_json(entry_path(key)) or {"key": key, "config": dataclasses.asdict(cfg), "rows": {}}
        before = found.get("record", {}).get("model_sha256")
        if before not in (None, record["model_sha256"]):
            earlier = found.setdefault("earlier_weights", {})
            for name in found["rows"]:
                earlier.setdefault(name, before)
        found["record"] = {k: v for k, v in record.items() if k != "config"}
        if eval_id is not None:
            found["rows"][eval_id] = rows
            found.get("earlier_weights", {}).pop(eval_id, None)
        found["rows"] = dict(sorted(found["rows"].items()))
        write_json(found, entry_path(key))


def weights_path(key: str) -> Path:
    return store_dir() / "weights" / f"{key}.pt"


def keep_weights(cfg: RunConfig, weights: Path) -> None:
    """In write mode, a copy of a finished run's weights (`weights`, its model.pt) beside its entry, kept until
    `make evidence` has run its notebooks (drop_weights): a notebook evaluates its runs after its whole grid
    has trained, so a session cut off in between leaves a fresh machine the evaluations to redo, not the
    training (ssl_core.runs restores the weights when their digest matches the stored record)."""
    if mode() == "write":
        copy_atomic(weights, weights_path(cfg.key()))


def kept_weights(cfg: RunConfig) -> Path | None:
    """The store's copy of run `cfg`'s weights (keep_weights), if it holds one and is not off."""
    path = weights_path(cfg.key())
    return path if mode() != "off" and path.exists() else None


def drop_weights() -> int:
    """Remove every kept copy of weights (once the notebooks have evaluated their runs); returns how many."""
    paths = list((store_dir() / "weights").glob("*.pt"))
    for path in paths:
        path.unlink()
    return len(paths)


def training_seconds(record: dict) -> float:
    """Seconds of training behind a run's record: its loop's (`train_seconds`), plus, for DnC, the base model's and
    the experts' (recorded under `stages`; `train_seconds` times the distillation only)."""
    stages = record.get("stages") or {}
    return record["train_seconds"] + stages.get("base", {}).get("seconds", 0.0) + \
        sum(expert["seconds"] for expert in stages.get("experts", []))


def summary() -> str:
    """What the store holds: runs, size on disk, and the training compute behind them."""
    entries = [read_json(p) for p in sorted(store_dir().glob("*.json"))]
    entries = [e for e in entries if e is not None]
    size = sum(p.stat().st_size for p in store_dir().glob("*.json"))
    cpu_hours = sum(training_seconds(e["record"]) * (e["record"].get("threads") or 1) for e in entries) / 3600
    wall_hours = sum(training_seconds(e["record"]) for e in entries) / 3600
    methods: dict[str, int] = {}
    for e in entries:
        methods[e["config"]["method"]] = methods.get(e["config"]["method"], 0) + 1
    return (f"{store_dir()}: {len(entries)} runs ({', '.join(f'{m} {n}' for m, n in sorted(methods.items()))}), "
            f"{size / 2 ** 20:.1f} MB; training took {wall_hours:.2f} run-hours, {cpu_hours:.2f} CPU-thread-hours")


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="What the results store holds.")
    parser.add_argument("--drop-weights", action="store_true",
                        help="remove the weights kept for runs whose notebooks had not finished (make evidence)")
    if parser.parse_args().drop_weights:
        print(f"dropped the kept weights of {drop_weights()} run(s)")
    print(summary())
