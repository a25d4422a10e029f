"""Issue 4's check: every method, pretrained on the curated world at the notebooks' default scale, against
a random-initialised encoder.

    python scripts/methods_table.py [--epochs 4] [--size 0] [--seeds 2]

For each method (ResNet-10 at width 8, the default presets' encoder; MAE, which needs a ViT, on vit_mini):
kNN accuracy (k=200) on the curated test split of the random-initialised encoder and of the pretrained
one (mean over seeds), the margin, the counted FLOPs of one training step per image, and measured
training images/s. Runs go through the cache, so a second call only prints.
"""
import argparse

from ssl_core.budget import step_flops
from ssl_core.config import RunConfig
from ssl_core.methods import METHODS
from ssl_core.estimate import measure_step_seconds
from ssl_core.runs import run_or_load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=0, help="pretraining images (0: the curated default, 5,000)")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print("| method | encoder | random-init kNN | trained kNN | margin | GFLOP/img per step | img/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for method in METHODS:
        encoder = "vit_mini" if method == "mae" else "resnet10"
        cfg = RunConfig(method=method, encoder=encoder, width=8, dataset="curated", dataset_size=args.size,
                        epochs=args.epochs, batch_size=64)
        knn = {}
        for epochs in (0.0, args.epochs):
            runs = [run_or_load(cfg.replace(epochs=epochs, seed=s), evals=("knn",), progress=False)
                    for s in range(args.seeds)]
            knn[epochs] = 100 * sum(df.value.iloc[0] for df in runs) / len(runs)
        gflop = step_flops(cfg) / cfg.batch_size / 1e9
        rate = cfg.batch_size / measure_step_seconds(cfg, steps=3)
        print(f"| {method} | {encoder} | {knn[0.0]:.1f} | {knn[args.epochs]:.1f} | {knn[args.epochs] - knn[0.0]:+.1f} "
              f"| {gflop:.3f} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
