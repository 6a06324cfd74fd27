"""End-of-run evaluation of the selected model: every protocol of research/evaluation.py on val and test,
the test-time modality ablation, FLOPs per sample, training curves; all written to the run directory.
The twin of research/torch/report.py: only prediction and FLOP counting are jax's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from research import plots
from research.config import Config, from_dict
from research.data.loader import SampleSet, Splits, load
from research.evaluation import evaluate
from research.jax import checkpoint
from research.jax.model import FusionModel, build_model
from research.jax.predict import forward, make_mesh, pad, predict, replicate, to_device
from research.metrics.verification import class_means

ABLATION_METRICS = ("acc", "macro_f1", "eer", "min_dcf_0.01")  # reported per removed modality


def final_report(model: FusionModel, splits: Splits, cfg: Config, mesh: Mesh, out: Path, history: list[dict]) -> dict:
    """Evaluate the loaded (best) model into `out`; returns summary metrics named `val/...` and `test/...`."""
    train_subjects = np.unique(splits.train.labels("subject"))
    open_set = cfg.data.split == "open"
    cohort = training_cohort(model, splits.train, cfg, mesh) if open_set and cfg.eval.as_norm else None
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
        preds = predict(model, data, cfg, mesh)
        kw = {"plots": cfg.eval.plots, "official": data.trials, "threshold": threshold}
        metrics = evaluate(preds, splits.classes, out / split, **kw, **protocol)
        threshold = metrics.get("threshold")
        summary |= {f"{split}/{k}": v for k, v in metrics.items()}
        if np.isfinite(preds["loss"]) and (preds["target"] >= 0).any():
            summary[f"{split}/loss"] = float(preds["loss"])
    summary |= modality_ablation(model, splits, cfg, mesh, out, protocol)
    summary["flops_per_sample"] = flops_per_sample(model, splits.test, cfg, mesh)
    if cfg.eval.plots and history:
        plots.training_curves(history, out / "training_curves.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate_checkpoint(run_dir: Path, out: Path, device: str = "auto") -> dict:
    """Rebuild a finished run's model from its record, load best.safetensors and evaluate it again.
    (`device` is torch's flag; jax runs on the devices it sees: set JAX_PLATFORMS=cpu to force the CPU.)"""
    record = json.loads((run_dir / "record.json").read_text())
    cfg = from_dict(record["config"])
    mesh = make_mesh()
    splits = load(cfg.data)
    rngs = nnx.Rngs(params=cfg.run.seed, dropout=cfg.run.seed, augment=cfg.run.seed)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=rngs)
    template = {"params": nnx.state(model, nnx.Param), "variables": nnx.split(model, nnx.Param, nnx.RngState, ...)[3]}
    best, _ = checkpoint.load(run_dir / "best.safetensors", template)
    nnx.update(model, best["params"], best["variables"])
    return final_report(model, splits, cfg, mesh, out, record["history"])


def training_cohort(
    model: FusionModel, train: SampleSet, cfg: Config, mesh: Mesh, drop: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """AS-norm cohort: the mean embedding of each training identity (never a test identity), with its id;
    `drop` removes a modality as in the evaluated samples, so that cohort and trials are embedded alike."""
    preds = predict(model, train, cfg, mesh, drop=drop)
    return class_means(preds["embedding"], preds["subject"])  # (S, E), (S,)


def modality_ablation(model: FusionModel, splits: Splits, cfg: Config, mesh: Mesh, out: Path, protocol: dict) -> dict:
    """The same model on the test split with one modality removed (masked as missing) at a time, through
    the same protocols (no plots) into out/test_without_{m}/; returns the headline metrics of each. An
    AS-norm cohort is embedded again without the modality, as the test samples are."""
    if len(cfg.model.modalities) < 2:
        return {}
    result = {}
    for m in sorted(cfg.model.modalities):
        preds = predict(model, splits.test, cfg, mesh, drop=m)
        cohort = None if protocol["cohort"] is None else training_cohort(model, splits.train, cfg, mesh, drop=m)
        metrics = evaluate(
            preds, splits.classes, out / f"test_without_{m}", plots=False, **(protocol | {"cohort": cohort})
        )
        result |= {f"test/without_{m}/{k}": metrics[k] for k in ABLATION_METRICS if k in metrics}
    return result


def flops_per_sample(model: FusionModel, data: SampleSet, cfg: Config, mesh: Mesh) -> float:
    """Forward FLOPs of one batch by XLA's cost analysis (every operation, so somewhat more than torch's
    counter, which counts matmuls and convolutions only) divided by its size."""
    model.eval()
    batch = next(data.batches(cfg.data.batch_size, shuffle=False, seed=0, epoch=0, train=False))
    graphdef, state = nnx.split(model)
    padded = to_device(pad(batch, cfg.data.batch_size), mesh)
    cost = forward.lower(graphdef, replicate(state, mesh), padded).cost_analysis()
    return float(cost["flops"]) / cfg.data.batch_size
