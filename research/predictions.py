"""Per-sample predictions gathered batch by batch: the part of predict that both backends share
(research/{torch,jax}/predict.py run the model; this keeps the arrays and the loss)."""

from __future__ import annotations

import numpy as np


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

    def arrays(self) -> dict:
        """Per-sample arrays of the split, and its loss."""
        preds = {k: np.concatenate(v) for k, v in self.parts.items()}
        preds["loss"] = np.float64(sum(self.losses) / max(sum(self.weights), 1))
        return preds
