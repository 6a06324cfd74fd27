"""Triplet loss with in-batch mining: batch-hard and semi-hard.

Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering",
CVPR 2015 (arXiv 1503.03832): L = max(0, d(a, p) - d(a, n) + alpha), semi-hard negatives.
Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017
(arXiv 1703.07737): batch-hard mining. Not a classification head: it takes a batch of embeddings and labels
(use a sampler with several samples per class).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from losses.jax.common import keep_mask, kept_mean, polar, upcast

MININGS = ("batch_hard", "semi_hard")


def pairwise_distances(x: jax.Array, *, squared: bool = False) -> jax.Array:
    """(B, D) -> (B, B) Euclidean distances (squared if asked), exactly 0 on the diagonal.

    ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>, clamped at 0; the square root has a zero gradient where the
    distance is 0 (its true derivative is infinite there).
    """
    sq_norms = jnp.square(x).sum(axis=1)  # (B,)
    sq = jnp.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * x @ x.T, 0.0)  # (B, B)
    sq = sq * (1.0 - jnp.eye(len(x), dtype=x.dtype))
    if squared:
        return sq
    return jnp.sqrt(jnp.maximum(sq, 1e-12)) * (sq > 0)


def triplet_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    keep: jax.Array | None = None,
    margin: float = 0.2,
    mining: str = "batch_hard",
    squared: bool = False,
    normalize: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Triplet loss over a batch (B, D) with labels (B,) -> (loss, distances (B, B)).

    batch_hard: per anchor a with a positive and a negative in the batch,
        max(0, max_p d(a, p) - min_n d(a, n) + margin); mean over those anchors (Hermans et al.).
    semi_hard: per positive pair (a, p), the negative n = argmin { d(a, n) : d(a, n) > d(a, p) } (FaceNet's
        semi-hard choice), or the farthest negative when every negative is closer than p (the fallback of
        TF-Addons' triplet_semihard_loss); max(0, d(a, p) - d(a, n) + margin), mean over positive pairs.
    Only kept samples are anchors, positives or negatives. A batch with no valid triplet gives 0 (still part
    of the graph, with a zero gradient).
    """
    if mining not in MININGS:
        raise ValueError(f"triplet mining must be one of {MININGS}, got {mining!r}")
    x = upcast(embeddings)
    x = polar(x)[0] if normalize else x
    d = pairwise_distances(x, squared=squared)  # (B, B)
    keep = keep_mask(keep, x)
    both = keep[:, None] & keep[None, :]  # (B, B)
    same = (labels[:, None] == labels[None, :]) & both  # (B, B)
    positive = same & ~jnp.eye(len(labels), dtype=bool)
    negative = both & ~same
    mine = _batch_hard if mining == "batch_hard" else _semi_hard
    per, valid = mine(d, positive, negative, margin)
    return kept_mean(per, valid), d


def _batch_hard(d: jax.Array, positive: jax.Array, negative: jax.Array, margin: float) -> tuple[jax.Array, jax.Array]:
    """Per-anchor losses (B,) and which anchors have a positive and a negative (B,)."""
    valid = positive.any(axis=1) & negative.any(axis=1)  # (B,)
    hardest_positive = jnp.where(positive, d, -jnp.inf).max(axis=1)  # (B,)
    hardest_negative = jnp.where(negative, d, jnp.inf).min(axis=1)  # (B,)
    per = jnp.where(valid, hardest_positive - hardest_negative + margin, jnp.zeros_like(d[0]))
    return jnp.maximum(per, 0.0), valid


def _semi_hard(d: jax.Array, positive: jax.Array, negative: jax.Array, margin: float) -> tuple[jax.Array, jax.Array]:
    """Per-pair losses (B * B,) and which pairs (a, p) are positive with a negative for a (B * B,)."""
    d_ap = d[:, :, None]  # (B, B, 1): anchor i, positive j
    d_an = d[:, None, :]  # (B, 1, B): anchor i, negative k
    beyond = negative[:, None, :] & (d_an > d_ap)  # (B, B, B)
    semi_hard = jnp.where(beyond, d_an, jnp.inf).min(axis=2)  # (B, B)
    farthest = jnp.where(negative, d, -jnp.inf).max(axis=1, keepdims=True)  # (B, 1)
    chosen = jnp.where(beyond.any(axis=2), semi_hard, farthest)  # (B, B)
    valid = positive & negative.any(axis=1, keepdims=True)  # (B, B)
    per = jnp.where(valid, d - chosen + margin, jnp.zeros_like(d))
    return jnp.maximum(per, 0.0).reshape(-1), valid.reshape(-1)


class Triplet(nnx.Module):
    """`triplet_loss` as a module (no parameters): forward(embeddings, labels, keep=None) -> (loss, distances)."""

    def __init__(
        self, *, margin: float = 0.2, mining: str = "batch_hard", squared: bool = False, normalize: bool = True
    ):
        if mining not in MININGS:
            raise ValueError(f"triplet mining must be one of {MININGS}, got {mining!r}")
        self.margin, self.mining, self.squared, self.normalize = margin, mining, squared, normalize

    def __call__(
        self, embeddings: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        return triplet_loss(
            embeddings,
            labels,
            keep=keep,
            margin=self.margin,
            mining=self.mining,
            squared=self.squared,
            normalize=self.normalize,
        )
