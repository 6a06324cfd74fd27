"""The framework-free parts of training that both trainers (research/torch/, research/jax/) share:
epoch length, class weights, per-epoch validation metrics and the best-epoch rule."""

from __future__ import annotations

import numpy as np

from research.config import Config
from research.data.loader import SampleSet
from research.metrics import crossmodal, lower_is_better
from research.metrics.verification import verify


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


def steps_per_epoch(data: SampleSet, cfg: Config) -> int:
    """Full batches per epoch: the last partial batch is dropped in both backends, because a fixed batch
    shape is what lets the jax step compile once; each epoch's order is a new permutation, so the dropped
    samples differ from epoch to epoch."""
    if len(data) < cfg.data.batch_size:
        raise ValueError(f"the training split has {len(data)} samples, fewer than one batch ({cfg.data.batch_size})")
    return len(data) // cfg.data.batch_size


def class_weights(cfg: Config, labels: np.ndarray, classes: int) -> np.ndarray | None:
    """`balanced`: w_c = N / (C * n_c) over the training labels (classes absent from train get weight 0)."""
    if cfg.loss.class_weights == "none":
        return None
    counts = np.bincount(labels[labels >= 0], minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def quick_metrics(preds: dict) -> dict[str, float]:
    """Loss and accuracy over samples whose class was seen in training (per-epoch validation)."""
    known = preds["target"] >= 0
    if not known.any() or "log_probs" not in preds:  # unseen classes, or a model without a classifier
        return {}
    correct = preds["log_probs"][known].argmax(-1) == preds["target"][known]
    return {"loss": float(preds["loss"]), "acc": float(correct.mean())}


def val_metrics(preds: dict, train_subjects: np.ndarray, cfg: Config) -> dict[str, float]:
    """Accuracy when the split's classes were seen in training and the model has a classifier, else open-set
    verification EER: of the embedding, or in a match model (model.task = match) of face against voice on
    the samples that have both."""
    metrics = quick_metrics(preds)
    if metrics:
        return metrics
    if cfg.model.task == "match":
        both = preds["face_present"] & preds["voice_present"]
        face, voice, subjects = preds["face_embedding"][both], preds["voice_embedding"][both], preds["subject"][both]
        result = crossmodal.verification(face, voice, subjects, n_trials=cfg.eval.trials, seed=cfg.run.seed)
    else:
        result, _ = verify(
            preds["embedding"], preds["subject"], train_subjects, n_trials=cfg.eval.trials, seed=cfg.run.seed
        )
    return {"loss": float("nan"), "eer": result["eer"]}


def is_better(value: float, best: float | None, key: str) -> bool:
    return best is None or (value < best if lower_is_better(key) else value > best)
