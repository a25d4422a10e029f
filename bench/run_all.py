"""Run every benchmark side by side and write bench/RESULTS.md (machine, versions, figures, ratios, date).

`make bench` runs `python bench/run_all.py`; `--quick` is a fast pass (about a minute), `--figures`
adds the cold- and warm-cache timing of `make figures` (~1 hour), `--precision-wide` the bf16 accuracy
check of ResNet-18 at width 64 on the same recipe, 8 seeds (~75 minutes). The default pass takes ~22 minutes on
a 2-core CPU, ~10 of them the bf16 accuracy check (bench/precision.py), ~3 where torch.compile pays.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench import augment, compile_payoff, gpu_epoch, grid, precision, stacking, step, wait_policy  # noqa: E402
from bench.timing import Target, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine() -> dict[str, str]:
    """CPU model, cores, the ISA flags that decide bf16 speed, memory, load, and torch's view of them."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flag_line = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(flag_line.group(1).split()) if flag_line else set()
    pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {"cpu": model.group(1) if model else platform.processor(),
            "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
            "flags": ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS),
            "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
            "memory": f"{pages * page / 2 ** 30:.0f} GiB",
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset (the OpenMP runtime's default)"),
            "load average (1 min) at start": f"{os.getloadavg()[0]:.1f}",
            "os": platform.platform()}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "lightly", "scikit-learn", "numpy", "pillow"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def probe(n: int | None, threads: int) -> tuple[str, list[Target]]:
    """bench/probe_vs_sklearn.py in a subprocess (it prints, it returns nothing): its table and the ratio
    of the fastest sklearn protocol with the same grid search to ssl_core's probe, at equal accuracy."""
    size = [] if n is None else ["--n", str(n)]          # None: the script's own default size
    cmd = [sys.executable, str(ROOT / "bench" / "probe_vs_sklearn.py"), *size, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {}
    for line in out.splitlines():
        fields = line[24:].split()
        if line.startswith(("ssl_core", "sklearn it=")) and len(fields) >= 5:
            rows[line[:24].strip()] = dict(wall=float(fields[0]), cpu=float(fields[1]), acc=float(fields[2]))
    ours = rows.pop("ssl_core (torch L-BFGS)")
    equal = {k: r for k, r in rows.items() if abs(r["acc"] - ours["acc"]) <= 0.005}
    fastest = min(equal, key=lambda k: equal[k]["wall"])
    text = f"`{' '.join(['python'] + cmd[1:]).replace(str(ROOT) + '/', '')}`\n\n```\n{out.strip()}\n```"
    return text, [Target(f"probe: fastest sklearn at equal accuracy ({fastest}) / ssl_core, wall",
                         equal[fastest]["wall"] / ours["wall"], 3.0),
                  Target("probe: the same, CPU time", equal[fastest]["cpu"] / ours["cpu"])]


def time_figures() -> str:
    """Wall time of `make figures` (papermill over notebooks/*.ipynb, default preset) with an empty
    run cache (a temporary SSL_CORE_CACHE), then again on the cache that run filled."""
    lines = ["| cache | wall s | exit status |", "|---|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="ssl_core_cache_") as cache:
        env = {**os.environ, "SSL_CORE_CACHE": cache}
        for label in ("cold (empty SSL_CORE_CACHE)", "warm (the cache the cold run filled)"):
            t0 = time.perf_counter()
            done = subprocess.run(["make", "figures"], cwd=ROOT, env=env, capture_output=True, text=True)
            lines.append(f"| {label} | {time.perf_counter() - t0:.1f} | {done.returncode} |")
            if done.returncode:
                lines.append(f"\n`make figures` failed:\n```\n{(done.stdout + done.stderr)[-2000:]}\n```")
                break
    return "\n".join(lines)


KEPT = "Kept from the previous RESULTS.md (not re-measured in this pass; `--figures` measures it):\n\n"


def previous_section(path: Path, title: str) -> str | None:
    """The body of section `## title` in the RESULTS.md at `path`, if it has one."""
    text = path.read_text() if path.exists() else ""
    start = text.find(f"\n## {title}\n")
    if start < 0:
        return None
    body = text[start + len(title) + 5:]
    return body[:body.find("\n## ")].strip() if "\n## " in body else body.strip()


def took(t0: float) -> str:
    return f" (took {time.perf_counter() - t0:.0f} s)"


def protocol(module) -> str:
    """The paragraphs of a benchmark's docstring between its summary and its `Run:` line."""
    return "\n\n".join(module.__doc__.strip().split("\n\n")[1:-1])


def met(row: Target, bf16_matches: dict[str, bool]) -> str:
    """Whether a row meets its target; a bf16 row only where bench/precision.py found bf16 matching fp32 at its
    setting (`bf16_matches`: setting -> every metric "matches")."""
    if row.target is None:
        return "-"
    if row.value < row.target:
        return "no"
    if row.bf16 is not None and not bf16_matches.get(row.bf16, False):
        why = "not shown to match fp32" if row.bf16 in bf16_matches else "not checked at this setting"
        return f"no: bf16 accuracy {why} (bench/precision.py)"
    return "yes"


def report(sections: list[tuple[str, str]], targets: list[Target], bf16_matches: dict[str, bool], checks: list[str],
           args, host: dict[str, str]) -> str:
    head = [f"# Benchmarks ({'quick pass' if args.quick else 'default pass'})", "",
            f"Written by `{' '.join(['python', 'bench/run_all.py'] + sys.argv[1:])}` on "
            f"{datetime.datetime.now().isoformat(timespec='minutes')}. Every figure is a median over "
            "interleaved rounds (the cases of one round run back to back, the first case rotates); a ratio "
            "is the median of the per-round ratios. The CPU may be shared: absolute figures drift, ratios "
            "less so.", "", "## Machine", ""]
    host = {**host, "load average (1 min) at the end": f"{os.getloadavg()[0]:.1f}"}
    head += [f"- {k}: {v}" for k, v in host.items()]
    head += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions().items()]
    head += ["", "## Targets (issue 11)", "", "| ratio | measured | target | met |", "|---|---:|---:|---|"]
    head += [f"| {t.what} | {t.value:.2f}x | {f'{t.target:g}x' if t.target else '-'} | {met(t, bf16_matches)} |"
             for t in targets]
    head += [""] + [f"- {check}" for check in checks]
    body = [f"\n## {title}\n\n{text}" for title, text in sections]
    return "\n".join(head) + "\n" + "\n".join(body) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast pass: fewer rounds, smaller batches, one encoder")
    parser.add_argument("--figures", action="store_true", help="also time `make figures`, cold and warm cache")
    parser.add_argument("--compile", action="store_true",
                        help="time the ssl_core step under torch.compile for every encoder, not only the presets'")
    parser.add_argument("--bf16-wide", action="store_true", help="also emulated-bf16 lightly at width 64 (slow)")
    parser.add_argument("--precision-wide", action="store_true",
                        help="also the bf16 accuracy check of ResNet-18 at width 64, 8 seeds (~75 minutes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(step.MODELS), help="encoder:width, e.g. resnet18:64")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sections, targets, checks, host = [], [], [], machine()

    t0 = time.perf_counter()
    print("augmentation", flush=True)
    images, rounds = (512, 3) if args.quick else (1024, 15)   # ~20 s: rounds are cheap, and this host is noisy
    figures = augment.measure(images, 256, rounds, args.threads)
    sections.append(("Augmentation: two views at 32x32, source images/s" + took(t0),
                     f"`python bench/augment.py --images {images} --rounds {rounds} --threads {args.threads}`\n\n"
                     f"{protocol(augment)}\n\n{table(figures, augment.REFERENCE)}"))
    targets += augment.targets(figures)

    for spec in step.MODELS[:1] if args.quick else args.models:
        encoder, width = step.parse_model(spec)
        plan = step.schedule(width, args.quick, args.bf16_wide)
        # the presets' encoder also runs compiled (RunConfig(compile=True)), except in the quick pass
        compiled = args.compile or (spec == step.MODELS[0] and not args.quick)
        print(f"SimCLR step, {encoder} width {width}", flush=True)
        t0 = time.perf_counter()
        figures = step.measure(encoder, width, **plan, threads=args.threads, compile_model=compiled)
        flags = f"{' --bf16-wide' if plan['bf16_steps'] and width >= 64 else ''}{' --compile' if compiled else ''}"
        title = f"SimCLR step: CIFAR {encoder} width {width}, batch {plan['batch']}, source images/s"
        sections.append((title + took(t0),
                         f"`python bench/step.py --models {spec} --batch {plan['batch']} --steps {plan['steps']} "
                         f"--rounds {plan['rounds']} --threads {args.threads}{flags}`\n\n"
                         f"{protocol(step)}\n\n{table(figures, step.best_lightly(figures))}"))
        targets += step.targets(figures, encoder, width)

    if not args.quick:                                    # whole runs in fresh processes: ~2 and ~4 minutes
        for module, title in [(compile_payoff, "Where torch.compile pays: whole SimCLR runs of the presets' encoder"),
                              (wait_policy, "OpenMP's wait policy: whole SimCLR runs of the presets' encoder")]:
            print(title, flush=True)
            t0 = time.perf_counter()
            text = module.measure(*module.parse(["--threads", str(args.threads)]))
            sections.append((title + took(t0), f"`python bench/{module.__name__.split('.')[-1]}.py --threads "
                                               f"{args.threads}`\n\n{protocol(module)}\n\n{text}"))

    print("grid throughput", flush=True)
    t0 = time.perf_counter()
    text, row = grid.measure(*((2, 0.2, 1) if args.quick else (8, 1.0, 3)))
    sections.append((grid.TITLE + took(t0), f"{protocol(grid)}\n\n{text}"))
    targets.append(row)

    print("stacked models", flush=True)
    t0 = time.perf_counter()
    text = stacking.measure(*((2, (16,), (1,), 1) if args.quick else (4, (16, 64), (1, 2), 3)))
    sections.append((stacking.TITLE.format(method="simclr") + took(t0), f"{protocol(stacking)}\n\n{text}"))

    print("bf16 against fp32 after a short run", flush=True)
    t0 = time.perf_counter()
    plans = [dict(settings=precision.SETTINGS[:1], epochs=1.0, seeds=2, dataset_size=0)] if args.quick else \
        [dict(settings=precision.SETTINGS, epochs=2.0, seeds=precision.SEEDS, dataset_size=0)]
    if args.precision_wide:
        # 4 seeds left kNN inconclusive (-1.70 [-3.67, +0.27]); the seed-to-seed spread at width 64 needs 8
        plans.append(dict(settings=("resnet18:64:simclr",), epochs=2.0, seeds=precision.SEEDS, dataset_size=0))
    summary = pd.concat([precision.summarise(precision.measure(**plan, threads=args.threads)) for plan in plans])
    commands = "\n".join(f"`python bench/precision.py --settings {' '.join(p['settings'])} --epochs {p['epochs']:g} "
                         f"--seeds {p['seeds']} --dataset-size {p['dataset_size']} --threads {args.threads}`"
                         for p in plans)
    sections.append(("bf16 autocast against fp32 after a short run, accuracy points" + took(t0),
                     f"{commands}\n\n{protocol(precision)}\n\n{precision.table(summary)}"))
    bf16_matches = {s: bool((part.verdict == "matches").all()) for s, part in summary.groupby("setting")}
    checks.append(f"bf16 accuracy after a short run (bench/precision.py, +-{precision.MARGIN:g} points): "
                  + "; ".join(f"{r['setting']} {r['metric']} {r['verdict']}, {'not worse' if r['no worse'] else 'worse not ruled out'}"
                             for _, r in summary.iterrows()))

    print("linear probe", flush=True)
    t0 = time.perf_counter()
    text, rows = probe(2000 if args.quick else None, args.threads)
    sections.append(("Linear probe vs scikit-learn (one run each, not interleaved)" + took(t0), text))
    targets += rows

    title = "SimCLR epoch on the GPU: CIFAR resnet18 width 64, 50,000 images, batch 512"
    if torch.cuda.is_available():
        print("GPU epoch", flush=True)
        t0 = time.perf_counter()
        text = "`python bench/gpu_epoch.py`\n\n" + gpu_epoch.measure("cuda")
        sections.append((title + took(t0), text))
    else:
        sections.append((title, "Not measured: this machine has no GPU. On one: `python bench/gpu_epoch.py` "
                                "(add `--compile` for torch.compile)."))
    title = "`make figures`, default preset"
    if args.figures:
        print("make figures", flush=True)
        sections.append((title, time_figures()))
    elif (kept := previous_section(args.output, title)) is not None:      # ~1 hour: not re-measured every pass
        sections.append((title, KEPT + kept.removeprefix(KEPT)))
    if (discussion := previous_section(args.output, "Discussion")) is not None:   # written by hand: kept as it is
        sections.append(("Discussion", discussion))
    args.output.write_text(report(sections, targets, bf16_matches, checks, args, host))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
