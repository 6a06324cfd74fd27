"""End-of-run evaluation of the selected model: every protocol of research/evaluation.py on val and test,
the test-time modality ablation, FLOPs per sample, training curves; all written to the run directory.
Framework-free: prediction and FLOP counting are the backend's (research/backend.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np

from research import plots
from research.config import Config
from research.data.loader import SampleSet, Splits
from research.evaluation import evaluate
from research.metrics.verification import class_means
from research.restore import restore

ABLATION_METRICS = ("acc", "macro_f1", "eer", "min_dcf_0.01")  # reported per removed modality


def final_report(
    backend: ModuleType, model, splits: Splits, cfg: Config, device, out: Path, history: list[dict]
) -> dict:
    """Evaluate the loaded (best) model into `out`; returns summary metrics named `val/...` and `test/...`."""
    train_subjects = np.unique(splits.train.labels("subject"))
    open_set = cfg.data.split == "open"
    cohort = training_cohort(backend, model, splits.train, cfg, device) if open_set and cfg.eval.as_norm else None
    protocol = dict(
        train_subjects=train_subjects if open_set else None,
        cohort=cohort,
        seed=cfg.run.seed,
        target=cfg.data.target,
        n_trials=cfg.eval.trials,
        top_k=cfg.eval.as_norm_top_k,
    )
    summary: dict[str, float] = {}
    threshold = None  # open set: test's pair accuracy is taken at the threshold chosen on val
    for split, data in (("val", splits.val), ("test", splits.test)):
        preds = backend.predict(model, data, cfg, device)
        kw = {"plots": cfg.eval.plots, "official": data.trials, "threshold": threshold}
        metrics = evaluate(preds, splits.classes, out / split, **kw, **protocol)
        threshold = metrics.get("threshold")
        summary |= {f"{split}/{k}": v for k, v in metrics.items()}
        if np.isfinite(preds["loss"]) and (preds["target"] >= 0).any():
            summary[f"{split}/loss"] = float(preds["loss"])
    summary |= modality_ablation(backend, model, splits, cfg, device, out, protocol)
    summary["flops_per_sample"] = backend.flops_per_sample(model, splits.test, cfg, device)
    if cfg.eval.plots and history:
        plots.training_curves(history, out / "training_curves.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate_checkpoint(run_dir: Path, out: Path, device: str = "auto") -> dict:
    """Rebuild a finished run's model from its record, load best.safetensors and evaluate it again
    (`device`: "auto", "cpu", "cuda", ...: where the run's backend places the model)."""
    run = restore(run_dir, device)
    history = json.loads((Path(run_dir) / "record.json").read_text())["history"]
    return final_report(run.backend, run.model, run.splits, run.cfg, run.device, out, history)


def training_cohort(
    backend: ModuleType, model, train: SampleSet, cfg: Config, device, drop: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """AS-norm cohort: the mean embedding of each training identity (never a test identity), with its id;
    `drop` removes a modality as in the evaluated samples, so that cohort and trials are embedded alike."""
    preds = backend.predict(model, train, cfg, device, drop=drop)
    return class_means(preds["embedding"], preds["subject"])  # (S, E), (S,)


def modality_ablation(
    backend: ModuleType, model, splits: Splits, cfg: Config, device, out: Path, protocol: dict
) -> dict:
    """The same model on the test split with one modality removed (masked as missing) at a time, through
    the same protocols (no plots) into out/test_without_{m}/; returns the headline metrics of each. An
    AS-norm cohort is embedded again without the modality, as the test samples are."""
    if len(cfg.model.modalities) < 2:
        return {}
    result = {}
    for m in sorted(cfg.model.modalities):
        preds = backend.predict(model, splits.test, cfg, device, drop=m)
        cohort = None
        if protocol["cohort"] is not None:
            cohort = training_cohort(backend, model, splits.train, cfg, device, drop=m)
        metrics = evaluate(
            preds, splits.classes, out / f"test_without_{m}", plots=False, **(protocol | {"cohort": cohort})
        )
        result |= {f"test/without_{m}/{k}": metrics[k] for k in ABLATION_METRICS if k in metrics}
    return result
