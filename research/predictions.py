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
        are read longest first) carry each sample's `index`: the rows are put back in its order and it is dropped; the
        copies of a sample (the k frames of a video face, data.face_frames) are folded into one row (`folded`).
        With `copies` > 1 (data.speed_perturb_labels: class c + k C is class c at speed k) the log-probabilities of a
        class's copies are summed into the class's, (N, k C) -> (N, C), so that evaluation scores the C classes the
        validation and test labels name."""
        preds = {k: np.concatenate(v) for k, v in self.parts.items()}
        if "index" in preds:
            order = np.argsort(preds["index"], kind="stable")
            preds = folded({k: v[order] for k, v in preds.items()})
        preds["loss"] = np.float64(sum(self.losses) / max(sum(self.weights), 1))
        if copies > 1 and "log_probs" in preds:
            n, classes = preds["log_probs"].shape
            preds["log_probs"] = logsumexp(preds["log_probs"].reshape(n, copies, classes // copies), axis=1)
        return preds


def folded(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows sorted by `index` with one row per sample: the copies of a sample (its video face at k frames,
    research/data/frames.py) become one. Embeddings: the mean of the copies' L2-normalised embeddings, normalised
    again (as a face template averages its frames' features; a sample read once keeps its embedding); log_probs:
    the log of the mean probability; every other field is the first copy's (labels and presence are the same in
    every copy). `index` is dropped."""
    index = preds.pop("index")
    starts = first_copies(index)  # (N,)
    if len(starts) == len(index):
        return preds
    counts = np.diff(np.r_[starts, len(index)])[:, None]  # (N, 1)
    out = {}
    for key, value in preds.items():
        if key.endswith("embedding"):
            mean = unit(np.add.reduceat(unit(value), starts, axis=0) / counts)  # (N, E)
            out[key] = np.where(counts > 1, mean, value[starts]).astype(value.dtype)  # a single copy stays as it is
        elif key == "log_probs":
            top = np.maximum.reduceat(value, starts, axis=0)  # (N, C), for a stable log-mean-exp
            total = np.add.reduceat(np.exp(value - np.repeat(top, counts[:, 0], axis=0)), starts, axis=0)
            out[key] = (top + np.log(total / counts)).astype(value.dtype)
        else:
            out[key] = value[starts]
    return out


def first_copies(index: np.ndarray) -> np.ndarray:
    """The first row of each sample (N,) among rows sorted by their sample `index` (a sample's copies are adjacent)."""
    return np.flatnonzero(np.r_[True, index[1:] != index[:-1]])


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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
