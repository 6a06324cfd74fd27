"""How voices become a batch's (B, S) array. `Crop` cuts every voice to S samples (training: at a random offset;
evaluation with eval.voice_seconds > 0: at the start). Whole utterances (eval.voice_seconds = 0, the default of
evaluation): the voices of a split are read longest first, and each batch is zero-padded to its longest voice
rounded up to a bucket, a power of two seconds or 1.5 times one (1, 1.5, 2, 3, 4, 6, 8, 12, ... s). The encoders
mask everything past `voice_len`, so the padding changes no embedding; the buckets keep the number of batch shapes
small (jax compiles one forward pass per shape) at the cost of at most 50 % padding (docs/evaluation.md, "Whole
utterances", measures it)."""

from __future__ import annotations

import grain
import numpy as np


class Crop(grain.transforms.Map):
    """Cut the voice to `samples` at floor(u * room), u = `fractions[index]` (None: at the start); samples = 0
    keeps it whole (Collate pads the batch)."""

    def __init__(self, fractions: np.ndarray | None, samples: int) -> None:
        self.fractions, self.samples = fractions, samples

    def map(self, record: dict) -> dict:
        if "error" in record:
            return record
        wave = record.pop("voice")
        if self.samples == 0:
            return record | {"voice": wave, "voice_len": np.int64(len(wave))}
        room = max(len(wave) - self.samples, 0) + 1
        start = 0 if self.fractions is None else int(np.floor(self.fractions[record["index"]] * room))
        clip = wave[start : start + self.samples]
        voice = np.zeros(self.samples, np.float32)  # (S,)
        voice[: len(clip)] = clip
        return record | {"voice": voice, "voice_len": np.int64(len(clip))}


def bucket(n: int, rate: int) -> int:
    """The padded length (samples) of a batch whose longest voice has n samples: the smallest of rate x (1, 1.5, 2,
    3, 4, 6, ...) that holds it; at least 1 s, so batches of short or missing voices share one shape."""
    k = 0
    while rate << k < n:  # rate * 2**k >= n
        k += 1
    size = rate << k
    return size * 3 // 4 if k > 0 and n <= size * 3 // 4 else size


def longest_first(indices: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`indices` reordered by the length of their voice, longest first (ties keep their order): sorted batches
    pad little, and the batch that needs the most memory comes first."""
    return indices[np.argsort(-lengths[indices], kind="stable")]


def padded(voices: list[np.ndarray], rate: int) -> np.ndarray:
    """Voices of any lengths -> (B, S) float32, zero-padded to S = bucket(longest)."""
    out = np.zeros((len(voices), bucket(max(len(v) for v in voices), rate)), np.float32)  # (B, S)
    for row, voice in zip(out, voices, strict=True):
        row[: len(voice)] = voice
    return out
