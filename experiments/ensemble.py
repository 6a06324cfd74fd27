"""Combine separately trained runs into one ensemble and evaluate it with the end-of-run protocols.

    python experiments/ensemble.py --runs runs/FACE runs/VOICE --combine mean|product|learned [--out DIR]

Every run is rebuilt from its record (any backend) and predicts its val and test splits; the runs must be
trained on the same data (same samples and classes), with any modalities, fusion or loss (pair-loss runs,
which have no classifier, only with each other and `mean`). Scores combine as
research/ensemble.py says; `learned` fits convex weights on val only. Written to DIR (default
RUNS_PARENT/ensemble-COMBINE): summary.json (the ensemble's `val/...`, `test/...` metrics, each member's
`members/NAME/test/acc` etc., the weights), val/, test/ as research/evaluation.py writes them, each
with scores.npz (the ensemble's log_probs, when the members have a classifier, embedding and targets),
and record.json, a run record that makes the ensemble a row of experiments/ablate.py's tables beside the
runs of its study (see `ensemble_record`).
AS-norm is not applied to ensembles.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research.ensemble import COMBINES, combine_predictions, fit_weights  # noqa: E402
from research.evaluation import evaluate  # noqa: E402
from research.restore import restore, split_predictions  # noqa: E402

HEADLINE = ("acc", "macro_f1", "eer", "min_dcf_0.01")  # what the printout compares per member


def member_predictions(run_dir: Path, device: str) -> tuple[dict[str, dict], object]:
    """({"val": preds, "test": preds}, restored run) of one run directory, through its own backend."""
    run = restore(run_dir, device)
    return split_predictions(run), run


def now() -> str:
    """A UTC time stamp as run records write them (research/tracking.py)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def ensemble_record(name: str, run_dirs: list[Path], combine: str, summary: dict, started: str) -> dict:
    """The ensemble as a run record (record.json) that experiments/ablate.py reads like a trained run's: the
    first member's config with `model.fusion = "ensemble"`, `model.combine` = the combination and
    `model.modalities` = the members' together, so a table keyed by fusion or modalities gives it its own row;
    its `params` is the members' total (every member's weights are used at test time)."""
    records = [json.loads((run_dir / "record.json").read_text()) for run_dir in run_dirs]
    config = copy.deepcopy(records[0]["config"])
    modalities = sorted({m for r in records for m in r["config"]["model"]["modalities"]})
    config["model"] |= {"fusion": "ensemble", "combine": combine, "modalities": modalities}
    counts = [r["summary"].get("params") for r in records]
    params = {"params": sum(counts)} if all(isinstance(c, int) for c in counts) else {}
    return {
        "name": name,
        "status": "finished",
        "config": config,
        "summary": summary | params,
        "members": [str(run_dir) for run_dir in run_dirs],
        "started_at": started,
        "finished_at": now(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories holding record.json")
    parser.add_argument("--combine", choices=COMBINES, default="mean")
    parser.add_argument("--out", type=Path, help="output folder (default: next to the first run)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--plots", action="store_true", help="write the evaluation's PNG plots")
    args = parser.parse_args(argv)
    started = now()
    for run_dir in args.runs:
        if not (run_dir / "record.json").exists() or not (run_dir / "best.safetensors").exists():
            print(f"error: {run_dir} holds no record.json and best.safetensors of a finished run", file=sys.stderr)
            return 2
    members, runs = zip(*(member_predictions(r, args.device) for r in args.runs), strict=True)
    splits, cfg = runs[0].splits, runs[0].cfg
    for run_dir, run in zip(args.runs[1:], runs[1:], strict=True):
        same = all(getattr(run.splits, s).ids == getattr(splits, s).ids for s in ("val", "test"))
        if not same or run.splits.classes[run.cfg.data.target] != splits.classes[cfg.data.target]:
            print(f"error: {run_dir} is not trained on the samples and classes of {args.runs[0]}", file=sys.stderr)
            return 2
    scored = ["log_probs" in m["val"] for m in members]  # False: a pair-loss run, embeddings only
    if not all(scored) and (any(scored) or args.combine != "mean"):
        print(
            "error: runs without a classifier (pair losses) combine by the mean of their embeddings' cosines "
            "only: --combine mean, with every member such a run",
            file=sys.stderr,
        )
        return 2
    weights = None
    if args.combine == "learned":
        weights = fit_weights([m["val"]["log_probs"] for m in members], members[0]["val"]["target"])
    protocol = {
        "train_subjects": np.unique(splits.train.labels("subject")) if cfg.data.split == "open" else None,
        "seed": cfg.run.seed,
        "target": cfg.data.target,
        "n_trials": cfg.eval.trials,
    }
    out = args.out or args.runs[0].parent / f"ensemble-{args.combine}"
    summary: dict[str, float] = {}
    for split in ("val", "test"):
        preds = combine_predictions([m[split] for m in members], args.combine, weights)
        data = getattr(splits, split)
        metrics = evaluate(preds, splits.classes, out / split, plots=args.plots, official=data.trials, **protocol)
        scores = {k: preds[k] for k in ("log_probs", "embedding", "target") if k in preds}
        np.savez(out / split / "scores.npz", **scores)
        summary |= {f"{split}/{k}": v for k, v in metrics.items()}
        for run_dir, member in zip(args.runs, members, strict=True):
            alone = evaluate(
                member[split], splits.classes, out / "members" / run_dir.name / split, plots=False, **protocol
            )
            summary |= {f"members/{run_dir.name}/{split}/{k}": alone[k] for k in HEADLINE if k in alone}
    if weights is not None:
        summary |= {f"weights/{run_dir.name}": float(w) for run_dir, w in zip(args.runs, weights, strict=True)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    record = ensemble_record(out.name, args.runs, args.combine, summary, started)
    (out / "record.json").write_text(json.dumps(record, indent=1))
    shown = [k for k in summary if k.startswith("weights/") or k.rsplit("/", 1)[-1] in HEADLINE]
    width = max(map(len, shown))
    print(f"ensemble ({args.combine}) of {len(args.runs)} runs -> {out}")
    for key in shown:
        print(f"  {key:<{width}}  {summary[key]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
