"""Face <-> voice matching objectives for a shared embedding space: symmetric InfoNCE and the sigmoid loss.

InfoNCE with a learned temperature: Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision" (CLIP), ICML 2021 (arXiv 2103.00020); van den Oord et al., arXiv 1807.03748.
Sigmoid loss: Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (SigLIP), ICCV 2023
(arXiv 2303.15343). Row i of `a` (e.g. a face) and row i of `b` (e.g. a voice) are a matching pair.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from losses.jax.common import keep_mask, kept_mean, polar, scalar, upcast

KINDS = ("infonce", "sigmoid")


def _similarities(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarities (B, B) between unit vectors of a (B, D) and b (B, D)."""
    return polar(upcast(a))[0] @ polar(upcast(b))[0].T


def _pairs(labels: jax.Array | None, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(matches (B, B), allowed (B, B)) bool. A match is a kept pair (i, j) with i = j, or with the same
    label when labels are given; allowed pairs are those of two kept samples. Both include the diagonal,
    so that no row of a dropped sample is empty (its loss is then finite, and weighted 0)."""
    eye = jnp.eye(len(keep), dtype=bool)
    allowed = (keep[:, None] & keep[None, :]) | eye
    same = eye if labels is None else labels[:, None] == labels[None, :]
    return same & allowed, allowed


def _soft_cross_entropy(logits: jax.Array, target: jax.Array, allowed: jax.Array) -> jax.Array:
    """Per row (B,): -sum_j target_ij log softmax_j(logits_i), the softmax over the allowed columns only.

    0 log 0 is taken as 0 with a select (a product would give 0 * -inf = NaN and a NaN gradient).
    """
    log_p = jax.nn.log_softmax(jnp.where(allowed, logits, -jnp.inf), axis=1)  # (B, B)
    return -(target * jnp.where(allowed, log_p, jnp.zeros_like(log_p))).sum(axis=1)


def info_nce_loss(
    a: jax.Array,
    b: jax.Array,
    logit_scale: jax.Array | float,
    labels: jax.Array | None = None,
    *,
    keep: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Symmetric InfoNCE (CLIP) -> (loss, logits (B, B)), logits = e^{logit_scale} cos(a_i, b_j).

    L = ( mean_i CE(logits[i, :], i) + mean_j CE(logits[:, j], j) ) / 2, temperature = e^{-logit_scale}.
    With labels, a pair of the same label counts as a match too: the target of a row (column) is uniform
    over its matches (our extension, so that two samples of one person in a batch are not pushed apart).
    With keep, only the kept pairs take part: the loss of the kept sub-batch.
    """
    similarities = _similarities(a, b)  # (B, B)
    logits = jnp.exp(scalar(logit_scale, similarities)) * similarities
    keep = keep_mask(keep, logits)
    matches, allowed = _pairs(labels, keep)  # (B, B)
    target = matches.astype(logits.dtype)
    rows = kept_mean(_soft_cross_entropy(logits, target / target.sum(axis=1, keepdims=True), allowed), keep)
    cols = kept_mean(_soft_cross_entropy(logits.T, target.T / target.T.sum(axis=1, keepdims=True), allowed), keep)
    return (rows + cols) / 2.0, logits


def sigmoid_loss(
    a: jax.Array,
    b: jax.Array,
    logit_scale: jax.Array | float,
    bias: jax.Array | float,
    labels: jax.Array | None = None,
    *,
    keep: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Pairwise sigmoid loss (SigLIP) -> (loss, logits (B, B)), logits = e^{logit_scale} cos(a_i, b_j) + bias.

    L = -(1 / B) sum_i sum_j log sigmoid(z_ij logits_ij), z_ij = +1 for a match (the diagonal, or the same
    label when labels are given), -1 otherwise. With keep, B and the sums count the kept samples only.
    """
    similarities = _similarities(a, b)  # (B, B)
    logits = jnp.exp(scalar(logit_scale, similarities)) * similarities + scalar(bias, similarities)
    keep = keep_mask(keep, logits)
    z = 2.0 * _pairs(labels, keep)[0].astype(logits.dtype) - 1.0
    per_row = jnp.where(keep[None, :], -jax.nn.log_sigmoid(z * logits), jnp.zeros_like(logits)).sum(axis=1)  # (B,)
    return kept_mean(per_row, keep), logits


class CrossModal(nnx.Module):
    """Learned temperature (and bias) for `info_nce_loss` or `sigmoid_loss`: forward(a, b, labels=None, keep=None).

    Initialisation from the papers: InfoNCE logit_scale = log(1 / 0.07), clamped in the forward pass to
    at most log(100) (CLIP); sigmoid logit_scale = log(10), bias = -10 (SigLIP). `scale_init` overrides
    the initial e^{logit_scale}.
    """

    def __init__(self, kind: str = "infonce", *, scale_init: float | None = None, bias_init: float = -10.0):
        if kind not in KINDS:
            raise ValueError(f"cross_modal kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        if scale_init is None:
            scale_init = 1.0 / 0.07 if kind == "infonce" else 10.0
        self.logit_scale = nnx.Param(jnp.asarray(math.log(scale_init), dtype=jnp.float32))
        self.bias = nnx.Param(jnp.asarray(float(bias_init), dtype=jnp.float32)) if kind == "sigmoid" else None

    def __call__(
        self, a: jax.Array, b: jax.Array, labels: jax.Array | None = None, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        if self.kind == "infonce":
            return info_nce_loss(a, b, jnp.minimum(self.logit_scale[...], math.log(100.0)), labels, keep=keep)
        return sigmoid_loss(a, b, self.logit_scale[...], self.bias[...], labels, keep=keep)
