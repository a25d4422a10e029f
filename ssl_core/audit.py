"""make audit: recompute stored runs from nothing and compare them with the store.

    python -m ssl_core.audit --runs 3        # three stored runs, chosen at random
    python -m ssl_core.audit --cheapest      # the stored run that trains fastest (CI)

Each chosen run is retrained in a fresh cache with the store off, with the thread count its record names,
and every stored row that names an evaluation of ssl_core.evaluate on a dataset is recomputed. On the CPU kind
that trained the run (runs.cpu_model: name, family, model, torch's instruction set) the weights (their sha256),
the losses and every recomputed metric must be identical (a run trained stacked is retrained stacked). On another
machine kind bits may differ (other kernels, bf16 where the other had fp32): metrics must then lie within
TOLERANCE points, as must the rows the store says were computed from the run's earlier weights (store.add). A
record that names only a model name (before 2026-12-06) counts as another kind: two machines both called
"AMD EPYC" trained the same run to other weights. Rows derived by panels (corruptions, mechanisms)
follow from the weights: identical weights make them identical, and the audit says how many it did not recompute.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import torch

from ssl_core import store
from ssl_core.budget import probe_rows
from ssl_core.config import RunConfig
from ssl_core.data import DATASETS, cache_dir
from ssl_core.evaluate import EVALS
from ssl_core.runs import cpu_model, pretrain_group, run_or_load
from ssl_core.train import Diverged

TOLERANCE = 6.0   # points between machine kinds: 1 vs 2 threads (another reduction order) moved SimCLR at 32 epochs
                  # by 4.9 kNN / 3.6 linear points, supervised by 0.4 / 0.5 (measured 2026-12-05 with --threads 2)


def parse_eval_id(eval_id: str) -> tuple[str, str, int, int] | None:
    """(evaluation, dataset, train size, test size) of a row name from runs.eval_id, such as
    "linear@suite_concepts-1000" or "segmentation@scenes_shapes-1000-500" (0: the split's default), or None."""
    name, _, rest = eval_id.partition("@")
    if name not in EVALS:
        return None
    datasets = {d.replace("/", "_"): d for d in DATASETS}
    parts = rest.split("-")
    for sizes in range(3):                             # eval_id adds up to two sizes; no dataset name holds a "-"
        head, tail = "-".join(parts[:len(parts) - sizes]), parts[len(parts) - sizes:]
        if head in datasets and all(t.isdigit() for t in tail):
            train, test = (*map(int, tail), 0, 0)[:2]
            return name, datasets[head], train, test
    return None


def audit_entry(entry: dict, threads: int | None = None) -> list[str]:
    """Retrain and re-evaluate one stored run here (with the threads its record names, or `threads`: another
    reduction order, judged like another machine kind); return the differences found (empty: it reproduces)."""
    cfg = RunConfig(**entry["config"])
    record = entry["record"]
    recorded = int(record.get("threads") or torch.get_num_threads())
    mode = record.get("mode", "alone")                 # a run resumed in the other mode cannot be retraced bit for bit
    same_kind = record.get("cpu") == cpu_model() and record.get("device", "cpu").startswith(
        "cuda") == torch.cuda.is_available() and threads in (None, recorded) and mode in ("alone", "stacked")
    torch.set_num_threads(threads or recorded)
    # a stacked run is retrained stacked: beside any other seed, since a member's bits do not depend on its neighbours
    partner = [cfg.replace(seed=cfg.seed + 1)] if mode == "stacked" else []
    fresh = pretrain_group([cfg, *partner], progress=False)[0]
    if isinstance(fresh, Diverged):
        raise fresh
    problems = []
    if same_kind and fresh["model_sha256"] != record["model_sha256"]:
        problems.append(f"weights differ (sha256 {fresh['model_sha256'][:12]} vs stored {record['model_sha256'][:12]})")
    if same_kind and fresh["losses"] != record["losses"]:
        problems.append(f"losses differ: {fresh['losses'][-3:]} vs stored {record['losses'][-3:]}")
    checked = skipped = 0
    for eval_id, rows in entry["rows"].items():
        parsed = parse_eval_id(eval_id)
        if parsed is None:
            skipped += 1
            continue
        name, dataset, train, test = parsed
        torch.set_num_threads(threads or int(rows[0].get("threads", recorded)))   # as the rows were computed
        now = probe_rows(cfg, name, dataset, train, test) if test else \
            run_or_load(cfg, (name,), dataset, progress=False, eval_size=train).to_dict("records")
        exact = same_kind and eval_id not in entry.get("earlier_weights", {})
        for old, new in zip(rows, now):
            if exact and old["value"] != new["value"]:
                problems.append(f"{eval_id} {old['metric']}: {new['value']!r} vs stored {old['value']!r}")
            if not exact and abs(100 * (old["value"] - new["value"])) > TOLERANCE:
                problems.append(f"{eval_id} {old['metric']}: {new['value']:.4f} vs stored {old['value']:.4f} "
                                f"(more than {TOLERANCE} points apart across machine kinds)")
            checked += 1
    print(f"  {cfg.method} {cfg.dataset} {cfg.epochs:g} epochs seed {cfg.seed} ({entry['key']}): "
          f"{'same' if same_kind else 'other'} machine kind, {checked} metrics recomputed, "
          f"{skipped} derived row sets follow from the weights: " + ("OK" if not problems else "DIFFERS"))
    return problems


def cheapest(entries: list[dict]) -> dict:
    """The stored run with the shortest training (every stage of it) among those with rows to recompute."""
    # rows from before they named their threads were computed with 1 thread in a grid worker; a run that
    # trained with more (alone) may have been evaluated with either, so only 1-thread runs are certain
    checkable = [e for e in entries if any(parse_eval_id(k) and ("threads" in rows[0] or e["record"].get(
        "threads") == 1) for k, rows in e["rows"].items())] or entries
    return min(checkable, key=lambda e: store.training_seconds(e["record"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="stored runs to recompute, chosen at random")
    parser.add_argument("--cheapest", action="store_true", help="the stored run with the shortest training")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choice (default: fresh)")
    parser.add_argument("--threads", type=int, default=None,
                        help="train with this many threads instead of the recorded count (judged within TOLERANCE)")
    args = parser.parse_args(argv)
    entries = [json.loads(p.read_text()) for p in sorted(store.store_dir().glob("*.json"))]
    entries = [e for e in entries if e["record"].get("steps")]          # random init has nothing to retrain
    if not entries:
        print(f"audit: the store {store.store_dir()} holds no trained run")
        return 1
    if args.cheapest:
        chosen = [cheapest(entries)]
    else:
        chosen = random.Random(args.seed).sample(entries, min(args.runs, len(entries)))
    data = cache_dir() / "data"
    with tempfile.TemporaryDirectory(prefix="ssl_core_audit_") as tmp:
        if data.exists():                                               # generated data is shared, runs are not
            (Path(tmp) / "data").symlink_to(data.resolve(), target_is_directory=True)
        os.environ.update(SSL_CORE_CACHE=tmp, SSL_CORE_STORE="off")
        print(f"audit: recomputing {len(chosen)} of {len(entries)} stored runs on {cpu_model()}")
        problems = [p for e in chosen for p in audit_entry(e, args.threads)]
    for p in problems:
        print("  DIFFERS:", p)
    print("audit: " + ("every stored metric reproduced" if not problems else f"{len(problems)} differences"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
