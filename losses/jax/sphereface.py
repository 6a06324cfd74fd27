"""SphereFace / A-Softmax: multiplicative angular margin, with the original lambda annealing.

Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017 (arXiv 1704.08063),
and the authors' caffe MarginInnerProduct layer (github.com/wy1iu/sphereface).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from encoders.jax.layers import Buffer
from losses.jax.common import (
    ClassHead,
    centres,
    cosine,
    keep_mask,
    register_class_weights,
    safe_labels,
    shifted_logits,
    upcast,
)
from losses.jax.softmax import softmax_loss


def sphereface_psi(cos: jax.Array, margin: int) -> jax.Array:
    """psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi / m, (k + 1) pi / m], k = 0 .. m - 1.

    psi is monotonically decreasing on [0, pi] and continuously differentiable. As in the caffe layer,
    cos(m theta) is the Chebyshev polynomial T_m(cos theta), so no acos is taken and the gradient stays
    finite at cos = +-1; k = floor(m theta / pi) is counted from the thresholds cos(j pi / m).
    """
    prev, cos_m = jnp.ones_like(cos), cos  # T_0, T_1
    for _ in range(margin - 1):
        prev, cos_m = cos_m, 2.0 * cos * cos_m - prev  # T_{n+1} = 2x T_n - T_{n-1}
    k = sum((cos <= math.cos(j * math.pi / margin)).astype(cos.dtype) for j in range(1, margin + 1))
    sign = 1.0 - 2.0 * jnp.remainder(k, 2.0)  # (-1)^k
    return sign * cos_m - 2.0 * k


def sphereface_loss(
    cos: jax.Array,
    labels: jax.Array,
    *,
    keep: jax.Array | None = None,
    scale: float | jax.Array,
    margin: int = 4,
    lamb: float | jax.Array = 0.0,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A-Softmax cross-entropy -> (loss, logits (B, C)).

    logits_j = s cos theta_j (j != y),  logit_y = s (lambda cos theta_y + psi(theta_y)) / (1 + lambda),
    where s is the feature norm ||x|| (B, 1) in the original loss or a constant scale for the
    feature-normalised variant, and lambda >= 0 blends in the plain softmax while training starts
    (lambda = 0: the loss of the paper). Gradients are the true derivatives of this formula. Mean over the
    kept samples.
    """
    cos = upcast(cos)  # (B, C)
    keep = keep_mask(keep, cos)
    labels = safe_labels(labels, keep)
    target = jnp.take_along_axis(cos, labels[:, None], axis=1)  # (B, 1)
    target = (lamb * target + sphereface_psi(target, margin)) / (1.0 + lamb)
    scale = upcast(scale)  # (B, 1) norms or a number
    margined = cos.at[jnp.arange(len(labels)), labels].set(target[:, 0])  # (B, C)
    loss, _ = softmax_loss(
        shifted_logits(scale, margined),  # the softmax of scale * margined, safe for huge feature norms
        labels,
        keep=keep,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
    )
    return loss, scale * margined


class Sphereface(ClassHead):
    """A-Softmax head with normalised class centres and no bias.

    scale = 0 (default): the original loss, logits scaled by the feature norm ||x||. scale > 0: the
    feature-normalised variant, logits scaled by s. The margin m is an integer (paper default 4).

    lambda annealing, as in the caffe layer: each training forward that keeps at least one sample first
    increments `step` (a buffer, so checkpoints carry it) and then uses
    lambda = max(lambda_min, lambda_base (1 + lambda_gamma step)^-lambda_power)
    = max(5, 1000 / (1 + 0.12 step)) with the published values. lambda_base = lambda_min = 0 turns it off.
    Training mode is NNX's: `head.train()` / `head.eval()` set `deterministic`.

    Not reproduced from the caffe layer: its hand-written backward pass renormalises the (w, x) gradient
    coefficients and takes the weight gradient as if there were no margin; here autodiff gives the exact
    gradient of the formula. OpenSphere's "SphereFace" (s = 30, m = 1.7, detached margin) is `sphereface_r`
    with version="v0", normalization="hard".
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        margin: int = 4,
        scale: float = 0.0,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
        label_smoothing: float = 0.0,
        class_weights: jax.Array | None = None,
        rngs: nnx.Rngs,
    ):
        if margin != int(margin) or margin < 1:
            raise ValueError(f"sphereface margin must be a positive integer, got {margin} (sphereface_r takes real m)")
        if scale < 0:
            raise ValueError(f"sphereface scale must be >= 0 (0 = scale by the feature norm), got {scale}")
        self.weight = centres(classes, dim, rngs=rngs)  # (C, D)
        self.margin, self.scale, self.label_smoothing = int(margin), scale, label_smoothing
        self.lambda_base, self.lambda_gamma = lambda_base, lambda_gamma
        self.lambda_power, self.lambda_min = lambda_power, lambda_min
        self.step = Buffer(jnp.zeros((), dtype=jnp.int32))
        self.deterministic = False
        register_class_weights(self, class_weights)

    def lamb(self) -> jax.Array:
        """The current annealing weight lambda (a 0-dim array; float32, torch computes it in float64)."""
        decay = self.lambda_base * (1.0 + self.lambda_gamma * self.step[...].astype(jnp.float32)) ** -self.lambda_power
        return jnp.maximum(decay, self.lambda_min)

    def shared(self, keep: jax.Array) -> dict[str, jax.Array]:
        """Counts a training step (as __call__ does) and gives the lambda of the blocks' logits."""
        if not self.deterministic:
            self.step[...] = self.step[...] + keep.any()
        return {"lamb": self.lamb()}

    def margin_logits(self, cos: jax.Array, norms: jax.Array, labels: jax.Array, *, lamb=None, bias=None) -> jax.Array:
        """The training logits (B, C) of cosines (B, C), embedding norms (B, 1) and labels: the margin applied as
        the loss applies it (`block_logits` calls it on a block of classes). `lamb` and `bias` stand in for
        a SphereFace head's annealed lambda and a SphereFace2 head's bias where the caller holds them."""
        scale = norms if self.scale == 0 else self.scale
        lamb = self.lamb().astype(cos.dtype) if lamb is None else lamb.astype(cos.dtype)
        return sphereface_loss(cos, labels, scale=scale, margin=self.margin, lamb=lamb)[1]

    def scores(self, embedding: jax.Array) -> jax.Array:
        """(B, D) -> (B, C) plain logits ||x|| cos theta (or s cos theta)."""
        cos, norms = cosine(embedding, self.weight[...])
        return (norms if self.scale == 0 else self.scale) * cos

    def __call__(
        self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        keep = keep_mask(keep, embedding)
        if not self.deterministic:
            self.step[...] = self.step[...] + keep.any()
        cos, norms = cosine(embedding, self.weight[...])  # (B, C), (B, 1)
        return sphereface_loss(
            cos,
            labels,
            keep=keep,
            scale=norms if self.scale == 0 else self.scale,
            margin=self.margin,
            lamb=self.lamb().astype(cos.dtype),
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )
