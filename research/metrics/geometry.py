"""Angles between embeddings and the class centres of a trained classification head.

What a margin head (ArcFace, CosFace, SphereFace2) is claimed to do on its training identities: pull each
embedding towards its own class centre (a small target angle) and push the centres apart (a large minimum
angle between two centres). For softmax the centres are the rows of its linear layer (the bias is left
out). Angles are in radians and do not depend on the norms of the vectors.

The minimum over all pairs is one pair's angle, so it is noisy; `nearest_centre_angles(...).mean()`
averages every centre's angle to its nearest other centre (the inter-class statistic of ArcFace's angle
table, W-Inter, as I read it). Centres can also be the mean normalised embedding of each class
(research/metrics/verification.class_means): ArcFace's table reports both.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def target_angles(embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Angle between each embedding (N, D) and the centre (C, D) of its class labels (N,) in [0, C) -> (N,)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(centres):
        raise ValueError(f"labels must be class indices in [0, {len(centres)}), got {labels.min()}..{labels.max()}")
    cos = np.sum(_unit(embeddings) * _unit(centres)[labels], axis=-1)  # (N,)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def nearest_centre_angles(centres: np.ndarray) -> np.ndarray:
    """Each centre's angle to its nearest other centre: centres (C, D), C >= 2 -> (C,)."""
    if len(centres) < 2:
        raise ValueError(f"the angle between centres needs at least 2 centres, got {len(centres)}")
    unit = _unit(centres)  # (C, D)
    cos = unit @ unit.T  # (C, C)
    np.fill_diagonal(cos, -1.0)
    return np.arccos(np.clip(cos.max(axis=1), -1.0, 1.0))


def min_centre_angle(centres: np.ndarray) -> float:
    """The smallest angle between two distinct class centres (C, D), C >= 2."""
    return float(nearest_centre_angles(centres).min())
