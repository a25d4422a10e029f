"""The full SimCLR training step, source images/s: ssl_core (METHODS["simclr"], the step the trainer runs)
vs lightly's own SimCLR example loop, with the same CIFAR ResNet-18 encoder (ssl_core.models) and batch.

- ssl_core: uint8 images resident in memory, batched `views` inside the method, channels_last, the
  precision `resolve_precision("auto")` picks here, AdamW; one forward of both views (2N images).
- lightly, as written in its examples: SimCLRProjectionHead + NTXentLoss, SimCLRTransform per sample
  (PIL) in a DataLoader with 2 workers, one forward per view, SGD; fp32, and with bf16 autocast (on a
  CPU without AMX/AVX512-BF16 bf16 is emulated: it is reported, and it is slow).
- lightly + channels_last (fp32, and bf16 where the CPU has it): the speed tricks of ssl_core's a lightly
  user could add in a line, so that "lightly's best setting" is not a straw man.
- ssl_core in fp32 as well, where it picks bf16: against lightly's best fp32 setting, the comparison that
  holds where bf16 is not shown to match fp32's accuracy (bench/precision.py).
- the shared part alone (a diagnostic): ssl_core's encoder and projector, forward and backward on 2N views
  made beforehand, no augmentation, loss or optimiser. Both loops run these kernels, so its speed over
  lightly's best is the ceiling of ours / lightly's best for any data path, loss and optimiser.

Every setting's untimed warm-up step takes a full batch (oneDNN builds its kernels per shape).
Every lightly round is one whole epoch of its DataLoader, so the CPU time of its workers is all counted;
the wall time includes the wait for the first batch once per epoch (a bias against lightly of about one
batch of augmentation per round: keep `--steps` >= 3 where time allows). ssl_core steps over consecutive
batches of the resident uint8 set.

Run: `python bench/step.py [--quick] [--models resnet10:8 resnet18:16 resnet18:64] [--bf16-wide] [--compile]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script: make `bench` importable
from bench.augment import PerSample, lightly_transform, to_pil  # noqa: E402
from bench.timing import Figure, Target, interleave, ratio, table, timed  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.data import load_dataset  # noqa: E402
from ssl_core.methods import METHODS, two_views  # noqa: E402
from ssl_core.models import build_encoder  # noqa: E402
from ssl_core.train import make_optimizer, resolve_precision, tune_device  # noqa: E402

OURS = "ssl_core simclr step"
COMPILED = OURS + " + torch.compile"       # RunConfig(compile=True)
OURS_FP32 = OURS + ", fp32"                  # RunConfig(precision="fp32"), where "auto" picks bf16
SHARED = "encoder + projector alone (diagnostic)"
LIGHTLY = ("lightly fp32 (as written)", "lightly fp32 + channels_last", "lightly bf16 autocast",
           "lightly bf16 autocast + channels_last")
MODELS = ("resnet10:8", "resnet18:16", "resnet18:64")   # the presets' encoder, RunConfig's default, ResNet-18


def ssl_core_step(cfg: RunConfig, num_classes: int, compile_model: bool = False, device: str = "cpu"):
    """The trainer's step (ssl_core.train.train, stage "the loop") on `device`, as a function of a uint8 batch there."""
    device = torch.device(device)
    precision = resolve_precision(cfg.precision, device)
    tune_device(device)
    torch.manual_seed(cfg.seed)
    model = METHODS["simclr"](cfg, num_classes).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    forward = torch.compile(model) if compile_model else model

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(x, y, g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, precision


def shared_step(cfg: RunConfig, model: nn.Module):
    """The kernels both loops run: the SimCLR `model`'s encoder and projector, forward and backward of 2N views.

    Returns (prepare, step): `prepare(x)` makes a batch's two views (the method's own), untimed; `step(v)`
    runs the rest.
    """
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    g = torch.Generator().manual_seed(cfg.seed)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return two_views(cfg, x, g)

    def step(v: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            z = model.projector(model.encoder(v))
        model.zero_grad(set_to_none=True)
        z.float().sum().backward()
    return prepare, step


class LightlySimCLR(nn.Module):
    """The model of lightly's SimCLR example: backbone, then SimCLRProjectionHead."""

    def __init__(self, backbone: nn.Module, dim: int, hidden: int, out: int):
        from lightly.models.modules import SimCLRProjectionHead
        super().__init__()
        self.backbone, self.projection_head = backbone, SimCLRProjectionHead(dim, hidden, out)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(start_dim=1))


def lightly_step(cfg: RunConfig, bf16: bool = False, channels_last: bool = False):
    """lightly's example loop body for one batch of two views (NTXentLoss, SGD lr 0.06 as written)."""
    from lightly.loss import NTXentLoss
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(cfg.encoder, cfg.width, cfg.image_size)
    model = LightlySimCLR(encoder, encoder.dim, cfg.proj_hidden, cfg.proj_dim)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    criterion, optimizer = NTXentLoss(temperature=cfg.temperature), torch.optim.SGD(model.parameters(), lr=0.06)

    def step(x0: torch.Tensor, x1: torch.Tensor) -> None:
        x0, x1 = x0.contiguous(memory_format=fmt), x1.contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z0, z1 = model(x0), model(x1)
            loss = criterion(z0, z1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


def measure(encoder: str, width: int, batch: int, steps: int, rounds: int, threads: int = 2, bf16_steps: int = 1,
            compile_model: bool = False, verbose: bool = True) -> dict[str, Figure]:
    """Images/s of every setting for one encoder and width, interleaved over `rounds` rounds of `steps` steps.

    The bf16 lightly settings take `bf16_steps` steps a round (0 = left out) where bf16 is emulated (~10x
    slower), and always `steps` where the CPU computes it natively (lightly's best setting may be bf16).
    """
    torch.set_num_threads(threads)
    cfg = RunConfig(encoder=encoder, width=width, batch_size=batch, device="cpu")
    data = load_dataset(cfg.dataset, "train", image_size=cfg.image_size)
    ours, precision = ssl_core_step(cfg, data.num_classes)
    bf16_steps = steps if precision == "bf16" else bf16_steps                 # native bf16: as fast as fp32
    n = max(steps, bf16_steps) * batch
    images, labels = data.images[:n], data.labels[:n]
    ours(images[:batch], labels[:batch])                                      # warm-up: allocator, kernels

    def ours_round(step=ours):
        return timed(steps * batch, lambda: [step(images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
                                             for i in range(steps)])

    torch.manual_seed(cfg.seed)
    prepare, shared = shared_step(cfg, METHODS["simclr"](cfg, data.num_classes).to(memory_format=torch.channels_last))
    views = [prepare(images[i * batch:(i + 1) * batch]) for i in range(steps)]
    shared(views[0])

    def shared_round():
        return timed(steps * batch, lambda: [shared(v) for v in views])

    pils = to_pil(images)
    transform = lightly_transform(cfg)
    loaders = {k: DataLoader(PerSample(pils[:k * batch], transform), batch_size=batch, shuffle=True,
                             drop_last=True, num_workers=2, persistent_workers=True) for k in {steps, bf16_steps} - {0}}

    def lightly_round(step, k):
        def one_round():                                  # one whole epoch, its start-up included
            return timed(k * batch, lambda: [step(x0, x1) for x0, x1 in loaders[k]])
        for i, (x0, x1) in enumerate(loaders[k]):         # warm-up: a whole epoch starts the workers ...
            if i == 0:
                step(x0, x1)                              # ... and one step the model
        return one_round

    cases = {OURS: ours_round, SHARED: shared_round,
             LIGHTLY[0]: lightly_round(lightly_step(cfg), steps),
             LIGHTLY[1]: lightly_round(lightly_step(cfg, channels_last=True), steps)}
    if bf16_steps:
        cases[LIGHTLY[2]] = lightly_round(lightly_step(cfg, bf16=True), bf16_steps)
        cases[LIGHTLY[3]] = lightly_round(lightly_step(cfg, bf16=True, channels_last=True), bf16_steps)
    if precision == "bf16":
        fp32, _ = ssl_core_step(cfg.replace(precision="fp32"), data.num_classes)
        fp32(images[:batch], labels[:batch])
        cases[OURS_FP32] = lambda: ours_round(fp32)
    kind = "native" if precision == "bf16" else "emulated"
    notes = {OURS: f"{precision}, channels_last, {threads} threads",
             SHARED: "views made beforehand; no loss, no optimiser",
             LIGHTLY[0]: "SimCLRTransform in 2 workers",
             **{name: f"{kind} on this CPU; {bf16_steps} step(s) a round" for name in LIGHTLY[2:] if bf16_steps}}
    if compile_model:
        compiled, _ = ssl_core_step(cfg, data.num_classes, compile_model=True)
        first = timed(2 * batch, lambda: [compiled(images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
                                          for i in range(2)])          # the backward compiles lazily too
        cases[COMPILED] = lambda: ours_round(compiled)
        notes[COMPILED] = f"compiling (first 2 steps) took {first.wall:.0f} s, {first.cpu:.0f} CPU-s"
    return interleave(cases, rounds, notes, verbose)


def best_lightly(figures: dict[str, Figure], cpu: bool = False, names: tuple[str, ...] = LIGHTLY) -> str:
    return max((name for name in names if name in figures), key=lambda name: figures[name].median(cpu))


def targets(figures: dict[str, Figure], encoder: str, width: int) -> list[Target]:
    """Issue 11's targets: 2x for the small CPU encoders, 1.2x for ResNet-18 at width 64. Where ssl_core trains
    in bf16 (it then also runs in fp32: OURS_FP32), its rows count only if bf16 matches fp32 in accuracy."""
    best, best_cpu = best_lightly(figures), best_lightly(figures, cpu=True)
    target = 1.2 if width >= 64 else 2.0
    bf16 = f"{encoder}:{width}:simclr" if OURS_FP32 in figures else None
    what = f"SimCLR step, {encoder} width {width}"
    rows = [Target(f"{what}: ssl_core / lightly's best ({best})", ratio(figures, OURS, best), target, bf16),
            Target(f"{what}: ssl_core / lightly's best per CPU-second ({best_cpu})",
                   ratio(figures, OURS, best_cpu, cpu=True), target, bf16),
            Target(f"{what}: ssl_core / lightly as written", ratio(figures, OURS, LIGHTLY[0])),
            Target(f"{what}: ceiling, encoder + projector alone / lightly's best ({best})", ratio(figures, SHARED, best))]
    if OURS_FP32 in figures:
        best32 = best_lightly(figures, names=LIGHTLY[:2])
        rows.append(Target(f"{what}: ssl_core fp32 / lightly's best fp32 ({best32})",
                           ratio(figures, OURS_FP32, best32), target))
    if COMPILED in figures:
        rows += [Target(f"{what}: ssl_core + torch.compile / lightly's best ({best})",
                        ratio(figures, COMPILED, best), target, bf16),
                 Target(f"{what}: ssl_core compiled / eager", ratio(figures, COMPILED, OURS))]
    return rows


def parse_model(spec: str) -> tuple[str, int]:
    """'resnet18:64' -> ('resnet18', 64)."""
    encoder, _, width = spec.partition(":")
    return encoder, int(width or 64)


def schedule(width: int, quick: bool = False, bf16_wide: bool = False) -> dict:
    """Batch, steps a round, rounds and emulated-bf16 steps a round for one width (~1-3 minutes a width here).

    ResNet-18 at width 64 costs ~15x width 16 per image, and emulated bf16 ~15x fp32 on top: at width 64
    the emulated bf16 settings are left out unless asked for (`bf16_wide`, about 5 more minutes); native
    bf16 (AMX / AVX512-BF16) is always measured.
    """
    if quick:
        return dict(batch=32, steps=2, rounds=2, bf16_steps=0)
    if width < 64:
        return dict(batch=64, steps=4, rounds=5, bf16_steps=1)
    return dict(batch=32, steps=2, rounds=5, bf16_steps=1 if bf16_wide else 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the presets' encoder only, batch 32, 2 steps x 2 rounds, no bf16")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="encoder:width, e.g. resnet18:64")
    parser.add_argument("--batch", type=int, help="override the schedule's batch size")
    parser.add_argument("--steps", type=int, help="override the schedule's steps a round")
    parser.add_argument("--rounds", type=int, help="override the schedule's rounds")
    parser.add_argument("--bf16-wide", action="store_true", help="also emulated-bf16 lightly at width 64 (slow)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the ssl_core step under torch.compile")
    args = parser.parse_args(argv)
    for encoder, width in map(parse_model, MODELS[:1] if args.quick else args.models):
        plan = schedule(width, args.quick, args.bf16_wide)
        plan.update({k: v for k in ("batch", "steps", "rounds") if (v := getattr(args, k)) is not None})
        print(f"{encoder} width {width}, {plan}")
        figures = measure(encoder, width, **plan, threads=args.threads, compile_model=args.compile)
        print(table(figures, best_lightly(figures)))
        print(*targets(figures, encoder, width), sep="\n")


if __name__ == "__main__":
    main()
