"""Per-sample predictions gathered batch by batch: the part of predict that both backends share
(research/{torch,jax}/predict.py run the model; this keeps the arrays and the loss)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from research.config import Config
from research.data.augment_plan import SPEEDS


def dropped(batch: dict[str, np.ndarray], drop: str) -> dict[str, np.ndarray]:
    """The batch with modality `drop` removed at test time (its presence flags False); "" drops nothing."""
    return {**batch, f"{drop}_present": np.zeros_like(batch[f"{drop}_present"])} if drop else batch


class Predictions:
    """The model's outputs and the batch's per-sample fields, one batch at a time, and the mean loss over the
    samples with a known label."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.losses: list[float] = []
        self.weights: list[int] = []

    def add(self, batch: dict[str, np.ndarray], loss: float, outputs: dict[str, np.ndarray]) -> None:
        """One batch: its mean loss, the model's per-sample `outputs` (NumPy), the batch's 1-D fields."""
        known = int((batch["target"] >= 0).sum())
        self.losses.append(loss * known)
        self.weights.append(known)
        for key, value in outputs.items():
            self.parts.setdefault(key, []).append(value)
        for key, value in batch.items():
            if value.ndim == 1:
                self.parts.setdefault(key, []).append(value)

    def arrays(self, copies: int = 1) -> dict:
        """Per-sample arrays of the split in sample order, and its loss. Batches read in another order (whole voices
        are read longest first) carry each sample's `index`: the rows are put back in its order and it is dropped.
        With `copies` > 1 (data.speed_perturb_labels: class c + k C is class c at speed k) the log-probabilities of a
        class's copies are summed into the class's, (N, k C) -> (N, C), so that evaluation scores the C classes the
        validation and test labels name."""
        preds = {k: np.concatenate(v) for k, v in self.parts.items()}
        if "index" in preds:
            order = np.argsort(preds.pop("index"), kind="stable")
            preds = {k: v[order] for k, v in preds.items()}
        preds["loss"] = np.float64(sum(self.losses) / max(sum(self.weights), 1))
        if copies > 1 and "log_probs" in preds:
            n, classes = preds["log_probs"].shape
            preds["log_probs"] = logsumexp(preds["log_probs"].reshape(n, copies, classes // copies), axis=1)
        return preds


def eval_batches(cfg: Config, **shard) -> dict:
    """The keywords of `SampleSet.batches` for evaluation: index order, no augmentation, voices whole
    (eval.voice_seconds = 0) or cropped from their start to eval.voice_seconds; `shard` = rank, world."""
    if cfg.eval.voice_seconds < 0:
        raise ValueError(f"eval.voice_seconds must be 0 (whole voices) or positive, got {cfg.eval.voice_seconds}")
    samples = round(cfg.eval.voice_seconds * cfg.data.sample_rate)
    return {"shuffle": False, "seed": cfg.run.seed, "epoch": 0, "train": False, "voice_samples": samples, **shard}


def class_copies(cfg: Config) -> int:
    """How many classes each training class became (data.speed_perturb_labels: one per speed), else 1."""
    return len(SPEEDS) if cfg.data.speed_perturb_labels else 1
