"""Open-set verification EER and trained-head geometry of each loss head, against the number of training
identities at a fixed budget of training samples (samples per identity fall as identities grow).

    python benchmarks/torch/verification_by_loss.py [--losses softmax,arcface,cosface,sphereface2]
                                                    [--identities 100,300,1000] [--samples 3000]
                                                    [--seeds 0,1,2] [--out DIR] [--key=value ...]

Every run trains on the identities of the embedded dataset's train split (identity-disjoint `open` split,
~60% of the generated identities; val and test get ~20% each) and is scored by cosine verification trials
on people it never saw (val and test); the best epoch is picked on val EER. The geometry is measured on
the last epoch's model (every head then has the same budget) over the train split (research/metrics/
geometry.py): the mean angle between an embedding and its own class centre, and the smallest angle
between two class centres (softmax's centres are the rows of its linear layer). Extra `--key=value`
arguments override the budget below (any config key). Prints mean +- std over seeds per identity count
and loss, and each loss's test EER difference to the first loss. A benchmark, not a test: which head wins
on this small dataset is a measurement, not a property of the code.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from losses.torch.softmax import Softmax  # noqa: E402
from research.config import Config, apply_overrides  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.metrics.geometry import min_centre_angle, target_angles  # noqa: E402
from research.torch import checkpoint  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import predict  # noqa: E402
from research.torch.trainer import train_and_evaluate  # noqa: E402

BUDGET = [
    "--data.split=open",
    "--data.target=identity",
    "--modalities=face",
    "--data.synthetic.noise=0.7",
    "--data.image_size=16",
    "--data.voice_seconds=0.1",  # voices are generated but not used (face only)
    "--model.layers=1",
    "--optim.epochs=8",
    "--eval.trials=2000",
    "--eval.plots=false",
    "--run.wandb=disabled",
    "--run.progress=false",
]


def dataset(identities: int, samples: int) -> list[str]:
    """About `identities` training people sharing `samples` training samples (at least 3 each)."""
    return [
        f"--data.synthetic.identities={round(identities / 0.6)}",
        f"--data.synthetic.samples_per_identity={max(3, round(samples / identities))}",
    ]


def geometry(cfg: Config, run_dir: Path) -> dict[str, float]:
    """Mean target angle and minimum centre angle (degrees) of the last epoch's model on the train split."""
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None)
    checkpoint.load(run_dir / "last.safetensors", model)
    preds = predict(model, splits.train, cfg, torch.device("cpu"))
    (head,) = model.heads.values()
    centres = (head.linear.weight if isinstance(head, Softmax) else head.weight).detach().numpy()  # (C, D)
    labels = preds["target"]  # (N,): every training sample's class is known
    return {
        "target": math.degrees(target_angles(preds["embedding"], labels, centres).mean()),
        "centre": math.degrees(min_centre_angle(centres)),
        "people": len(set(labels.tolist())),
        "samples": len(labels),
    }


def run(loss: str, seed: int, overrides: list[str], run_dir: Path) -> dict[str, float]:
    args = [*BUDGET, *overrides, f"--loss={loss}", f"--run.seed={seed}", f"--run.out={run_dir.parent}"]
    cfg = apply_overrides(Config(), args)
    started = time.time()
    summary = train_and_evaluate(cfg, run_dir, run_dir.name)
    measured = {"val": summary["val/eer"], "test": summary["test/eer"], **geometry(cfg, run_dir)}
    return measured | {"seconds": time.time() - started}


def mean_std(values: list[float], digits: int = 4) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.{digits}f} +- {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", default="softmax,arcface,cosface,sphereface2")
    parser.add_argument("--identities", default="100,300,1000", help="training identities, one run set each")
    parser.add_argument("--samples", type=int, default=3000, help="training samples, the same at every count")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args, overrides = parser.parse_known_args()
    names, seeds = args.losses.split(","), [int(s) for s in args.seeds.split(",")]
    counts = [int(n) for n in args.identities.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for n in counts:
            for loss in names:
                data = [*dataset(n, args.samples), *overrides]
                results[n, loss] = [run(loss, seed, data, out / f"{n}-{loss}-{seed}") for seed in seeds]
    print(f"\nbudget: {' '.join([*BUDGET, *overrides])}; {args.samples} training samples; seeds {seeds}")
    header = f"{'people x samples':<18}{'loss':<13}{'val EER':>18}{'test EER':>18}{'test - ' + names[0]:>17}"
    print(f"{header}{'target angle':>17}{'centre angle':>17}{'s/run':>7}")
    for n in counts:
        base = statistics.mean(r["test"] for r in results[n, names[0]])
        for loss in names:
            runs = results[n, loss]
            first, test = runs[0], [r["test"] for r in runs]
            size = f"{first['people']} x {first['samples'] // first['people']}"
            line = f"{size:<18}{loss:<13}{mean_std([r['val'] for r in runs]):>18}{mean_std(test):>18}"
            line += f"{statistics.mean(test) - base:>+17.4f}{mean_std([r['target'] for r in runs], 1):>17}"
            line += f"{mean_std([r['centre'] for r in runs], 1):>17}"
            print(f"{line}{statistics.mean(r['seconds'] for r in runs):>7.0f}")


if __name__ == "__main__":
    main()
