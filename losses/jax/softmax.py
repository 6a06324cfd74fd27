"""Softmax cross-entropy head: a linear classifier with optional class weights and label smoothing.

The margin heads (sphereface, sphereface_r, cosface, arcface) reuse `softmax_loss` on their margin logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from encoders.jax import layers
from losses.jax.common import ClassHead, keep_mask, kept_mean, register_class_weights, safe_labels, upcast


def softmax_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    keep: jax.Array | None = None,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of logits (B, C) against labels (B,) over the kept samples, in at least float32.

    With smoothing e and class weights w (torch's definition, Szegedy et al. 2016 for the smoothing):
        l_n = -(1 - e) w[y_n] log p[n, y_n] - (e / C) sum_c w[c] log p[n, c]
        loss = sum_n keep_n l_n / sum_n keep_n w[y_n]
    which is the plain mean of -log p[n, y_n] over the kept samples when e = 0 and w = 1. -> (loss, logits).
    """
    logits = upcast(logits)  # (B, C)
    keep = keep_mask(keep, logits)
    labels = safe_labels(labels, keep)[:, None]  # (B, 1)
    log_p = jax.nn.log_softmax(logits, axis=1)  # (B, C)
    w = jnp.ones_like(log_p[0]) if class_weights is None else class_weights.astype(log_p.dtype)  # (C,)
    w_y = w[labels[:, 0]]  # (B,)
    smooth = (log_p * w).sum(axis=1) / logits.shape[1]  # (B,)
    per_sample = (
        -(1.0 - label_smoothing) * w_y * jnp.take_along_axis(log_p, labels, axis=1)[:, 0] - label_smoothing * smooth
    )
    return kept_mean(per_sample, keep, w_y), logits


class Softmax(ClassHead):
    """Linear layer + softmax cross-entropy; `scores` are the plain linear logits."""

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        label_smoothing: float = 0.0,
        class_weights: jax.Array | None = None,
        rngs: nnx.Rngs,
    ):
        self.linear = layers.Linear(dim, classes, rngs=rngs)
        self.label_smoothing = label_smoothing
        register_class_weights(self, class_weights)

    def scores(self, embedding: jax.Array) -> jax.Array:
        """(B, D) -> (B, C) linear logits, in at least float32."""
        return self.block_logits(embedding, *self.centres(), None)[0]

    def centres(self) -> tuple[jax.Array, jax.Array]:
        return self.linear.kernel[...].T, self.linear.bias[...]

    def block_logits(self, embedding, weight, class_bias, labels, **shared) -> tuple[jax.Array, None]:
        """Linear logits (B, C_b) on the rows `weight`, `class_bias`, in at least float32 (no margin, no norms)."""
        return upcast(embedding) @ upcast(weight).T + upcast(class_bias), None

    def __call__(
        self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        return softmax_loss(
            self.scores(embedding),
            labels,
            keep=keep,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )
