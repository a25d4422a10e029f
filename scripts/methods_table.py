"""Issue 4's check: every method, briefly pretrained on the curated world, against a random encoder.

    python scripts/methods_table.py [--epochs 3] [--size 2000]

Prints method, encoder, kNN accuracy (k=200) on the curated test split of the random-initialised
and of the pretrained encoder, and measured training images/s. Runs go through the cache, so a
second call only prints.
"""
import argparse

from ssl_core.config import RunConfig
from ssl_core.methods import METHODS
from ssl_core.runs import measure_step_seconds, run_or_load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for method in METHODS:
        encoder = "vit_tiny_p8" if method == "mae" else "resnet18"
        cfg = RunConfig(method=method, encoder=encoder, width=8, dataset="curated", dataset_size=args.size,
                        epochs=args.epochs, batch_size=64, device="cpu")
        for epochs in (0.0, args.epochs):
            df = run_or_load(cfg.replace(epochs=epochs), evals=("knn",), progress=False)
            rows.append((method, encoder, epochs, 100 * df.value.iloc[0]))
        seconds = measure_step_seconds(cfg)
        print(f"{method:10s} {encoder:12s} random {rows[-2][3]:5.1f}  trained {rows[-1][3]:5.1f}  "
              f"{64 / seconds:6.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
