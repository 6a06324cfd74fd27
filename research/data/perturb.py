"""Training with a fixed set of random perturbations per sample: an attack-independent defence.

Each training sample i owns `copies` perturbations, drawn once, uniformly from the L-inf ball of radius
`face_eps` on its pixels (in [0, 1]) and `voice_eps` on its waveform (in [-1, 1]); perturbation k of sample i
is a pure function of (seed, i, k), so it is the same in every epoch, every run with that seed and any
worker count, and differs between samples. Each epoch shows every sample one of its copies, the copy picked
by (seed, epoch, i). The perturbed input is clipped to the valid range. This is the data-side counterpart
of the attacks in research/{torch,jax}/attack.py (docs/robustness.md).

It runs in the input pipeline (research/data/pipeline.py) as a per-record transform before the voice crop,
so a perturbation belongs to the whole recording, not to the crop window of one epoch.
"""

from __future__ import annotations

import grain
import numpy as np

from research.config import PerturbConfig


def enabled(cfg: PerturbConfig) -> bool:
    return cfg.face_eps > 0 or cfg.voice_eps > 0


def delta(shape: tuple[int, ...], eps: float, *, seed: int, index: int, copy: int, modality: str) -> np.ndarray:
    """Perturbation `copy` of sample `index`: uniform in [-eps, eps]^shape, float32, fixed by its arguments."""
    stream = {"face": 0, "voice": 1}[modality]
    rng = np.random.default_rng([seed, index, copy, stream])
    return rng.uniform(-eps, eps, size=shape).astype(np.float32)


def copy_of(n: int, copies: int, seed: int, epoch: int) -> np.ndarray:
    """Which copy each of the split's n samples shows in an epoch (N,), independent of batching and sharding."""
    return np.random.default_rng([seed, epoch, 2]).integers(copies, size=n)


class Perturb(grain.transforms.Map):
    """Add sample `index`'s chosen fixed perturbation to its face and voice (records from pipeline.Read).

    The face stays uint8-scaled (float32 in [0, 255]), which the collate step divides by 255 as before.
    """

    def __init__(self, cfg: PerturbConfig, seed: int, chosen: np.ndarray) -> None:
        self.cfg, self.seed, self.chosen = cfg, seed, chosen

    def map(self, record: dict) -> dict:
        if "error" in record:
            return record
        i = int(record["index"])
        where = {"seed": self.seed, "index": i, "copy": int(self.chosen[i])}
        face, voice = record["face"], record["voice"]
        if self.cfg.face_eps > 0:
            pixels = face.astype(np.float32) / 255.0 + delta(face.shape, self.cfg.face_eps, modality="face", **where)
            face = np.clip(pixels, 0.0, 1.0) * 255.0  # (3, H, W)
        if self.cfg.voice_eps > 0:
            noise = delta(voice.shape, self.cfg.voice_eps, modality="voice", **where)
            voice = np.clip(voice + noise, -1.0, 1.0).astype(np.float32)  # (n,)
        return record | {"face": face, "voice": voice}
