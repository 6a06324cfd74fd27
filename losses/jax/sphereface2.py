"""SphereFace2: one-vs-all binary classification on the hypersphere, no softmax.

Wen, Liu, Weller, Raj, Singh, "SphereFace2: Binary Classification is All You Need for Deep Face
Recognition", ICLR 2022 (arXiv 2108.01513), following the authors' OpenSphere code (head/sphereface2.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from losses.jax.common import (
    ClassHead,
    centres,
    cosine,
    keep_mask,
    kept_mean,
    reject_unsupported,
    safe_labels,
    scalar,
    upcast,
)

MARGIN_TYPES = ("C", "A", "M")


def similarity_adjustment(z: jax.Array | float, t: float) -> jax.Array | float:
    """g(z) = 2 ((z + 1) / 2)^t - 1, which maps [-1, 1] onto itself (t = 1: identity)."""
    return 2.0 * ((z + 1.0) / 2.0) ** t - 1.0


def sphereface2_cosines(cos: jax.Array, labels: jax.Array, *, margin_type: str, margin: float, t: float) -> jax.Array:
    """Adjusted cosines (B, C): forward value with margin and g, gradient that of cos (as in OpenSphere).

    C (additive):       target g(cos theta_y) - m,         others g(cos theta_i) + m
    A (angular):        target g(cos(min(theta_y + m, pi))), others g(cos theta_i)
    M (multiplicative): target g(cos(min(m theta_y, pi))),   others g(cos theta_i)
    """
    cos = upcast(cos)  # (B, C)
    # torch: a no_grad block. Rounding can leave |cos| a hair above 1; ((z+1)/2)^t needs z >= -1.
    c = jnp.clip(jax.lax.stop_gradient(cos), -1.0, 1.0)
    target = jnp.take_along_axis(c, labels[:, None], axis=1)  # (B, 1) cos theta_y
    if margin_type == "C":
        others = similarity_adjustment(c, t) + margin
        target = similarity_adjustment(target, t) - margin
    else:
        theta = jnp.arccos(target)
        theta = theta + margin if margin_type == "A" else theta * margin
        others = similarity_adjustment(c, t)
        target = similarity_adjustment(jnp.cos(jnp.clip(theta, 0.0, math.pi)), t)
    adjusted = others.at[jnp.arange(len(labels)), labels].set(target[:, 0])
    return cos + jax.lax.stop_gradient(adjusted - cos)


def sphereface2_loss(
    cos: jax.Array,
    labels: jax.Array,
    bias: jax.Array | float,
    *,
    keep: jax.Array | None = None,
    margin_type: str = "C",
    lamb: float = 0.7,
    scale: float = 40.0,
    margin: float = 0.4,
    t: float = 3.0,
) -> tuple[jax.Array, jax.Array]:
    """Weighted one-vs-all logistic loss -> (loss, logits (B, C)), logits = r adjusted cos + b.

    For SphereFace2-C (paper Eq. with similarity adjustment g):
        L = lambda / r log(1 + exp(-(r (g(cos theta_y) - m) + b)))
          + (1 - lambda) / r sum_{i != y} log(1 + exp(r (g(cos theta_i) + m) + b))
    averaged over the kept samples; A and M change the margined cosines (see `sphereface2_cosines`). This is
    OpenSphere's loss divided by its loss weight lw (50), a constant factor.
    """
    if margin_type not in MARGIN_TYPES:
        raise ValueError(f"sphereface2 margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
    keep = keep_mask(keep, cos)
    labels = safe_labels(labels, keep)
    adjusted = sphereface2_cosines(cos, labels, margin_type=margin_type, margin=margin, t=t)  # (B, C)
    logits = scale * adjusted + scalar(bias, adjusted)
    positive = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)  # (B, C)
    weight = (lamb * positive + (1.0 - lamb) * (1.0 - positive)) / scale
    per_class = weight * (jax.nn.softplus(logits) - positive * logits)  # torch's binary_cross_entropy_with_logits
    return kept_mean(per_class.sum(axis=1), keep), logits


def sphereface2_bias(classes: int, *, margin_type: str, lamb: float, scale: float, margin: float, t: float) -> float:
    """Initial bias b that balances the positive and negative gradients at initialisation (paper, Sec. 3).

    At initialisation cos theta ~ 0 for every class, so the logits are a_y + b (target) and a_i + b
    (others) with a_y, a_i below. b solves lambda (1 - sigmoid(a_y + b)) = (1 - lambda)(C - 1) sigmoid(a_i + b):
        z = lambda / ((1 - lambda)(C - 1)),
        b = log(2 z) - a_i - log(1 - z + sqrt((1 - z)^2 + 4 z exp(a_y - a_i)))
    """
    if classes < 2:
        raise ValueError("sphereface2 needs at least 2 classes (its initial bias balances C - 1 negatives)")
    g0 = similarity_adjustment(0.0, t)  # g(cos(pi / 2))
    if margin_type == "C":
        a_y, a_i = scale * (g0 - margin), scale * (g0 + margin)
    else:
        theta_y = math.pi / 2 + margin if margin_type == "A" else margin * math.pi / 2
        a_y, a_i = scale * similarity_adjustment(math.cos(min(math.pi, theta_y)), t), scale * g0
    z = lamb / ((1.0 - lamb) * (classes - 1.0))
    root = math.sqrt((1.0 - z) ** 2 + 4.0 * z * math.exp(a_y - a_i))
    if z <= 1.0:
        log_term = math.log(1.0 - z + root)
    else:  # few classes: 1 - z + root cancels; its rationalised form 4 z e^(a_y - a_i) / (root + z - 1) does not
        log_term = math.log(4.0 * z) + (a_y - a_i) - math.log(root + z - 1.0)
    return math.log(2.0 * z) - a_i - log_term


class Sphereface2(ClassHead):
    """SphereFace2 head: normalised class centres and one learned bias b shared by all classes.

    Defaults are the authors' (OpenSphere, SphereFace2-C): lambda = 0.7, r = 40, m = 0.4, t = 3. Their
    appendix configs use m = 0.5 for the A type and m = 1.7 for M: set the margin when changing the type.
    The margin and g act in the forward pass only (their gradient is detached, as in OpenSphere's code;
    I did not find this stated in the paper itself). `scores` are r cos theta (prediction only needs an
    order). Class weights and label smoothing belong to softmax heads: given here, they raise.
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        margin_type: str = "C",
        lamb: float = 0.7,
        scale: float = 40.0,
        margin: float = 0.4,
        t: float = 3.0,
        label_smoothing: float = 0.0,
        class_weights: jax.Array | None = None,
        rngs: nnx.Rngs,
    ):
        reject_unsupported("sphereface2", class_weights, label_smoothing)
        if margin_type not in MARGIN_TYPES:
            raise ValueError(f"sphereface2 margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
        if not 0.0 < lamb < 1.0:
            raise ValueError(f"sphereface2 lamb must be in (0, 1), got {lamb}")
        self.weight = centres(classes, dim, rngs=rngs)  # (C, D)
        bias = sphereface2_bias(classes, margin_type=margin_type, lamb=lamb, scale=scale, margin=margin, t=t)
        self.bias = nnx.Param(jnp.asarray(bias, dtype=jnp.float32))
        self.margin_type, self.lamb, self.scale, self.margin, self.t = margin_type, lamb, scale, margin, t

    def shared(self, keep: jax.Array) -> dict[str, jax.Array]:
        return {"bias": self.bias[...]}

    def block_loss(self, logits, norms, keep, block) -> jax.Array:
        """A sum of one-vs-all losses over classes: each block's sum is independent (no normalisation)."""
        return block.binary_loss(logits, keep, lamb=self.lamb, scale=self.scale)

    def margin_logits(self, cos: jax.Array, norms: jax.Array, labels: jax.Array, *, lamb=None, bias=None) -> jax.Array:
        """The training logits (B, C) of cosines (B, C), embedding norms (B, 1) and labels: the margin applied as
        the loss applies it (`block_logits` calls it on a block of classes). `lamb` and `bias` stand in for
        a SphereFace head's annealed lambda and a SphereFace2 head's bias where the caller holds them."""
        kwargs = dict(margin_type=self.margin_type, lamb=self.lamb, scale=self.scale, margin=self.margin, t=self.t)
        return sphereface2_loss(cos, labels, self.bias[...] if bias is None else bias, **kwargs)[1]

    def scores(self, embedding: jax.Array) -> jax.Array:
        """(B, D) -> (B, C) r cos theta."""
        return self.scale * cosine(embedding, self.weight[...])[0]

    def __call__(
        self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        cos, _ = cosine(embedding, self.weight[...])  # (B, C)
        return sphereface2_loss(
            cos,
            labels,
            self.bias[...],
            keep=keep,
            margin_type=self.margin_type,
            lamb=self.lamb,
            scale=self.scale,
            margin=self.margin,
            t=self.t,
        )
