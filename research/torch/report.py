"""End-of-run evaluation of the selected model: every protocol of research/evaluation.py on val and test,
the test-time modality ablation, FLOPs per sample, training curves; all written to the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from research import plots
from research.config import Config
from research.data.loader import SampleSet, Splits
from research.evaluation import evaluate
from research.metrics.verification import class_means
from research.torch.model import FusionModel
from research.torch.predict import predict, quick_metrics, to_device
from research.tracking import Tracker


def final_report(model: FusionModel, splits: Splits, cfg: Config, device, run_dir: Path, tracker: Tracker) -> dict:
    """Evaluate the loaded (best) model; returns summary metrics named `val/...` and `test/...`."""
    train_subjects = np.unique(splits.train.labels("subject"))
    open_set = cfg.data.split == "open"
    cohort = training_cohort(model, splits.train, cfg, device) if open_set and cfg.eval.as_norm else None
    summary: dict[str, float] = {}
    for split, data in (("val", splits.val), ("test", splits.test)):
        preds = predict(model, data, cfg, device)
        metrics = evaluate(
            preds,
            splits.classes,
            run_dir / "eval" / split,
            train_subjects=train_subjects if open_set else None,
            cohort=cohort,
            seed=cfg.run.seed,
            plots=cfg.eval.plots,
            target=cfg.data.target,
            n_trials=cfg.eval.trials,
            top_k=cfg.eval.as_norm_top_k,
        )
        summary |= {f"{split}/{k}": v for k, v in metrics.items()}
        if np.isfinite(preds["loss"]) and (preds["target"] >= 0).any():
            summary[f"{split}/loss"] = float(preds["loss"])
    summary |= modality_ablation(model, splits.test, cfg, device)
    summary["flops_per_sample"] = flops_per_sample(model, splits.test, cfg, device)
    if cfg.eval.plots:
        curve = plots.training_curves(tracker.record["history"], run_dir / "eval" / "training_curves.png")
        tracker.images({"plots/training_curves": curve, **test_images(run_dir / "eval" / "test")})
    (run_dir / "eval" / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def training_cohort(model: FusionModel, train: SampleSet, cfg: Config, device) -> tuple[np.ndarray, np.ndarray]:
    """AS-norm cohort: the mean embedding of each training identity (never a test identity), with its id."""
    preds = predict(model, train, cfg, device)
    return class_means(preds["embedding"], preds["subject"])  # (S, E), (S,)


def modality_ablation(model: FusionModel, test: SampleSet, cfg: Config, device) -> dict[str, float]:
    """The same model on the test split with one modality removed (masked as missing) at a time."""
    if len(cfg.model.modalities) < 2:
        return {}
    result = {}
    for m in sorted(cfg.model.modalities):
        metrics = quick_metrics(predict(model, test, cfg, device, drop=m))
        if "acc" in metrics:
            result[f"test/without_{m}/acc"] = metrics["acc"]
    return result


def flops_per_sample(model: FusionModel, data: SampleSet, cfg: Config, device) -> float:
    """Forward FLOPs of one batch (torch's FLOP counter: matmuls and convolutions) divided by its size."""
    model.eval()
    batch = next(data.batches(cfg.data.batch_size, shuffle=False, seed=0, epoch=0, train=False))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(to_device(batch, device))
    return counter.get_total_flops() / len(batch["target"])


def test_images(folder: Path) -> dict[str, Path]:
    return {f"plots/{p.stem}": p for p in sorted(folder.glob("*.png"))}
