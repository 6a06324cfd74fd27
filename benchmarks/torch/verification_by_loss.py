"""Open-set verification EER of each loss head: same model, data and budget, several seeds.

    python benchmarks/torch/verification_by_loss.py [--losses softmax,arcface,sphereface2] [--seeds 0,1,2]
                                                    [--out DIR] [--key=value ...]

Every run trains on the identities of the embedded dataset's train split (identity-disjoint `open` split)
and is scored by cosine verification trials on people it never saw (val and test); the best epoch is
picked on val EER. Extra `--key=value` arguments override the budget below (any config key). Prints EER
mean +- std over seeds per loss, and each loss's difference to the first loss. A benchmark, not a test:
margin heads at their published hyper-parameters are tuned for thousands of identities, and which head
wins on this small dataset is a measurement, not a property of the code.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from research.config import Config, apply_overrides  # noqa: E402
from research.torch.trainer import train_and_evaluate  # noqa: E402

BUDGET = [
    "--data.split=open",
    "--data.target=identity",
    "--modalities=face",
    "--data.synthetic.identities=200",
    "--data.synthetic.samples_per_identity=12",
    "--data.synthetic.noise=0.7",
    "--data.image_size=16",
    "--model.layers=1",
    "--optim.epochs=8",
    "--eval.trials=2000",
    "--eval.plots=false",
    "--run.wandb=disabled",
    "--run.progress=false",
]


def run(loss: str, seed: int, overrides: list[str], out: Path) -> dict[str, float]:
    cfg = apply_overrides(Config(), [*BUDGET, *overrides, f"--loss={loss}", f"--run.seed={seed}", f"--run.out={out}"])
    started = time.time()
    summary = train_and_evaluate(cfg, out / f"{loss}-{seed}", f"{loss}-{seed}")
    return {"val": summary["val/eer"], "test": summary["test/eer"], "seconds": time.time() - started}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} +- {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", default="softmax,arcface,sphereface2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args, overrides = parser.parse_known_args()
    names, seeds = args.losses.split(","), [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        results = {loss: [run(loss, seed, overrides, out) for seed in seeds] for loss in names}
    print(f"\nbudget: {' '.join([*BUDGET, *overrides])}; seeds {seeds}")
    print(f"{'loss':<14}{'val EER':>20}{'test EER':>20}{'test - ' + names[0]:>18}{'s/run':>8}")
    base = statistics.mean(r["test"] for r in results[names[0]])
    for loss, runs in results.items():
        test = [r["test"] for r in runs]
        line = f"{loss:<14}{mean_std([r['val'] for r in runs]):>20}{mean_std(test):>20}"
        print(f"{line}{statistics.mean(test) - base:>+18.4f}{statistics.mean(r['seconds'] for r in runs):>8.0f}")


if __name__ == "__main__":
    main()
