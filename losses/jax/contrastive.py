"""Contrastive loss on Siamese pairs with a margin.

Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006; used for
speaker verification on L2-normalised embeddings, e.g. Chung et al., "In defence of metric learning for
speaker recognition", Interspeech 2020 (arXiv 2003.11982). Not a classification head: the caller builds
pairs (a_i, b_i) and says which are the same person, or `Contrastive.in_batch` pairs every two samples of a
batch (how the model trains with --loss contrastive; docs/losses.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from losses.jax.common import keep_mask, kept_mean, polar, upcast


def contrastive_loss(
    a: jax.Array,
    b: jax.Array,
    same: jax.Array,
    *,
    keep: jax.Array | None = None,
    margin: float = 1.0,
    normalize: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Pairs a, b (B, D) and same (B,) bool -> (loss, distances (B,)).

    L = mean_i [ same_i d_i^2 + (1 - same_i) max(0, m - d_i)^2 ] / 2,  d_i = ||a_i - b_i||,
    on unit vectors when `normalize` (then d is in [0, 2]); the mean is over the kept pairs.
    """
    a, b = upcast(a), upcast(b)
    if normalize:
        a, b = polar(a)[0], polar(b)[0]
    diff = a - b  # (B, D)
    square = jnp.square(diff).sum(axis=1)  # (B,)
    distance = jnp.where(square > 0, jnp.sqrt(jnp.where(square > 0, square, 1.0)), 0.0)  # (B,); gradient 0 at 0
    same = same.astype(diff.dtype)
    per_pair = same * square + (1.0 - same) * jnp.square(jnp.maximum(margin - distance, 0.0))
    return kept_mean(per_pair, keep_mask(keep, diff)) / 2.0, distance


class Contrastive(nnx.Module):
    """`contrastive_loss` as a module (no parameters): forward(a, b, same, keep=None) -> (loss, distances)."""

    def __init__(self, *, margin: float = 1.0, normalize: bool = True):
        self.margin, self.normalize = margin, normalize

    def __call__(
        self, a: jax.Array, b: jax.Array, same: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        return contrastive_loss(a, b, same, keep=keep, margin=self.margin, normalize=self.normalize)

    def in_batch(
        self, embeddings: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Every pair i < j of a batch (B, D) with labels (B,): same = equal labels, kept when both samples are
        -> (loss, distances (B (B - 1) / 2,)). A P x K batch has P K (K - 1) / 2 same pairs among them."""
        i, j = np.triu_indices(len(labels), k=1)  # (B (B - 1) / 2,) each
        keep = keep_mask(keep, embeddings)
        return self(embeddings[i], embeddings[j], labels[i] == labels[j], keep[i] & keep[j])
