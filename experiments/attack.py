"""White-box adversarial attacks on a finished run: one modality's input, a metric per L-inf budget.

    python experiments/attack.py --run runs/NAME --attack fgsm|pgd --modality face|voice \\
        --eps 0 1/255 2/255 4/255 8/255 [--targeted] [--steps 10] [--split test] [--out DIR]

Faces are attacked in pixel space ([0, 1]), voices on the waveform ([-1, 1]; the budget is also reported as
the SNR in dB). On a closed-set split the attack goes through the classification loss and the table has the
identification accuracy (targeted: also the rate of samples classified as their target class and its mean
probability); on an open-set split (unseen identities) through the embedding, and the table has the
verification EER (research/{torch,jax}/attack.py; docs/robustness.md). Written to DIR (default
RUN/attack/ATTACK-MODALITY[-targeted]): table.md, table.csv, results.json, metric_vs_eps.png (and .pdf), and each
budget's evaluation (eps_K/metrics.json). AS-norm is not applied.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research import plots  # noqa: E402
from research.evaluation import evaluate  # noqa: E402
from research.restore import restore  # noqa: E402
from research.robustness import ATTACKS, RANGES, attack_split  # noqa: E402

COLUMNS = ("eps", "acc", "target_rate", "target_prob", "eer", "linf", "snr_db")


def budget_arg(text: str) -> float:
    """A budget as a decimal or a fraction: 0.03, 8/255."""
    return float(Fraction(text))


def row(eps: float, metrics: dict, preds: dict, spent: dict, modality: str) -> dict[str, float]:
    """One table row: the headline metric, and the budget spent (max L-inf, mean SNR of the attacked inputs)."""
    found = {"eps": eps, "linf": float(spent["linf"].max())}
    found |= {k: metrics[k] for k in ("acc", "eer") if k in metrics}
    if "target_class" in spent:
        probs = np.exp(preds["log_probs"].astype(np.float64))  # (N, C)
        target = spent["target_class"]
        found["target_rate"] = float((probs.argmax(1) == target).mean())
        found["target_prob"] = float(probs[np.arange(len(target)), target].mean())
    if modality == "voice":
        changed = preds["voice_present"] & np.isfinite(spent["snr_db"])  # an unchanged input has no finite SNR
        found["snr_db"] = float(np.mean(spent["snr_db"][changed])) if changed.any() else float("inf")
    return found


def write_table(rows: list[dict], out: Path, title: str) -> None:
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    lines = [",".join(columns)] + [",".join(f"{r.get(c, float('nan')):.6g}" for c in columns) for r in rows]
    (out / "table.csv").write_text("\n".join(lines) + "\n")
    md = [f"{title}\n", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(f"{r.get(c, float('nan')):.4g}" for c in columns) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory holding record.json")
    parser.add_argument("--attack", choices=ATTACKS, required=True)
    parser.add_argument("--modality", choices=sorted(RANGES), required=True)
    parser.add_argument("--eps", nargs="+", type=budget_arg, required=True, help="L-inf budgets (0.03, 8/255)")
    parser.add_argument("--targeted", action="store_true", help="towards a wrong class (or an impostor's embedding)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--step-size", type=float, default=None, help="PGD step as a fraction of eps (2.5/steps)")
    parser.add_argument("--no-random-start", action="store_true", help="PGD starts at the clean input")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--seed", type=int, default=0, help="PGD's random start and the targets")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not (args.run / "record.json").exists() or not (args.run / "best.safetensors").exists():
        print(f"error: {args.run} holds no record.json and best.safetensors of a finished run", file=sys.stderr)
        return 2
    run = restore(args.run, args.device)
    if args.modality not in run.cfg.model.modalities:
        print(
            f"error: the run's model has no {args.modality} input ({', '.join(run.cfg.model.modalities)})",
            file=sys.stderr,
        )
        return 2
    splits, cfg, data = run.splits, run.cfg, getattr(run.splits, args.split)
    classes = len(splits.classes[cfg.data.target])
    protocol = {
        "train_subjects": np.unique(splits.train.labels("subject")) if cfg.data.split == "open" else None,
        "seed": cfg.run.seed,
        "target": cfg.data.target,
        "n_trials": cfg.eval.trials,
    }
    name = f"{args.attack}-{args.modality}" + ("-targeted" if args.targeted else "")
    out = args.out or args.run / "attack" / name
    fraction = args.step_size if args.step_size is not None else 2.5 / args.steps
    rows = []
    for eps in args.eps:
        attack = {"name": args.attack, "eps": eps, "targeted": args.targeted, "seed": args.seed}
        if args.attack == "pgd":
            attack |= {"steps": args.steps, "step_size": fraction * eps, "random_start": not args.no_random_start}
        preds, spent = attack_split(run.backend, run.model, data, cfg, run.device, args.modality, attack, classes)
        metrics = evaluate(preds, splits.classes, out / f"eps_{eps:.6g}", plots=False, **protocol)
        rows.append(row(eps, metrics, preds, spent, args.modality))
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in rows[-1].items()), flush=True)
    title = f"{name} on {args.run.name} ({args.split})"
    write_table(rows, out, title)
    plots.attack_curves(rows, title, RANGES[args.modality], out / "metric_vs_eps.png")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps({"args": settings, "rows": rows}, indent=1))
    print(f"{title} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
