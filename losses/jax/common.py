"""Helpers shared by the heads in this folder (not a loss: nothing here is built by `losses.build`).

Every head computes its loss in at least float32 whatever the input dtype: `upcast` lifts bf16/fp16 to
float32 (float64 stays, when x64 is enabled), and `cosine` runs its matmul in that dtype (jax has no
autocast: the cast is explicit).

Every loss is a per-sample masked computation with fixed shapes: `keep` (B,) bool says which samples count
(None: all of them). A dropped sample's label may be anything (-1 for an unknown class): `safe_labels` sets
it to 0 before any gather, and `kept_mean` gives it weight 0, so it changes neither the loss nor its gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def upcast(x: jax.Array) -> jax.Array:
    """Floating arrays to at least float32 (bf16/fp16 -> fp32, fp64 kept); other dtypes unchanged."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def scalar(value: jax.Array | float, like: jax.Array) -> jax.Array:
    """A number or 0-dim array in the dtype of `like` (an array keeps its gradient)."""
    return jnp.asarray(value, dtype=like.dtype)


def polar(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(..., D) -> (unit vectors (..., D), norms (..., 1)), finite for zero and for huge norms.

    Squaring the entries of a float32 vector of norm ~1e20 overflows to inf. Dividing by the largest
    |entry| first (a constant for autodiff: the direction is scale-invariant, so the gradient is exactly
    that of x / ||x||) keeps every square <= 1. A zero vector maps to direction 0 and norm 0, with
    torch's F.normalize gradient there (y / max(||y||, 1e-12): 1e12 times the identity).
    """
    peak = jax.lax.stop_gradient(jnp.abs(x).max(axis=-1, keepdims=True))
    peak = jnp.where(peak > 0, peak, jnp.ones_like(peak))
    y = x / peak  # max |y| = 1
    return y / jnp.maximum(_norm(y), 1e-12), peak * _norm(y)


def _norm(x: jax.Array) -> jax.Array:
    """||x|| over the last axis (..., 1), with torch's zero gradient at x = 0 (double where: sqrt's slope
    is infinite there, and a single where would pass 0 * inf = NaN back)."""
    square = jnp.square(x).sum(axis=-1, keepdims=True)
    positive = square > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, square, 1.0)), 0.0)


def cosine(embedding: jax.Array, centres: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cosines between embeddings (B, D) and class centres (C, D): (cos (B, C), feature norms (B, 1)).

    Computed in at least float32. The centres are normalised inside the graph (as in CosFace/ArcFace
    code): the gradient reaching W is its tangent projection. Dividing the (B, C) product by the centre
    norms, instead of materialising normalised centres (C, D), saves a pass and a copy of W when C is
    large; centres are parameters of unit norm at initialisation, so their norms need no overflow guard.
    """
    x, norms = polar(upcast(embedding))
    w = upcast(centres)
    inverse_norms = 1.0 / jnp.maximum(_norm(w)[:, 0], 1e-12)  # (C,)
    return (x @ w.T) * inverse_norms, norms  # (B, C), (B, 1)


def keep_mask(keep: jax.Array | None, like: jax.Array) -> jax.Array:
    """(B,) bool mask of the samples that count, for a batch `like` (B, ...); None keeps every sample."""
    if keep is None:
        return jnp.ones(like.shape[0], dtype=bool)
    return jnp.asarray(keep, dtype=bool)


def safe_labels(labels: jax.Array, keep: jax.Array) -> jax.Array:
    """Labels (B,) with the dropped samples' labels set to class 0, so that gathers and one-hots stay in range."""
    return jnp.where(keep, labels, jnp.zeros_like(labels))


def kept_mean(values: jax.Array, keep: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """sum_n keep_n values_n / sum_n keep_n weight_n (weight 1 by default): the mean over the kept samples.

    No kept sample (or a zero total weight) gives 0 with a zero gradient, not 0 / 0. Dropped values are
    selected away (not multiplied by 0), so a non-finite value there cannot reach the loss.
    """
    total = jnp.where(keep, values, jnp.zeros_like(values)).sum()
    count = keep.astype(values.dtype) if weight is None else jnp.where(keep, weight, jnp.zeros_like(weight))
    count = count.sum()
    return total / jnp.where(count != 0, count, jnp.ones_like(count))


def shifted_logits(scale: jax.Array | float, cos: jax.Array) -> jax.Array:
    """r (cos - max_j cos) (B, C) for a scale r ((B, 1) or a number): the logits r cos shifted by their row max.

    A softmax cross-entropy ignores a shift per row, so it gives the loss of r cos, while every entry here is
    <= 0 exactly. Forming r cos first is not safe under XLA (jax): it recomputes r cos inside the fusion of
    r cos - max(r cos) as a fused multiply-add, off by ~1e-7 |r cos|, which overflows exp when r = ||x|| is
    beyond ~1e9. The max is a constant for the gradient (the shift's gradient is zero anyway).
    """
    return scale * (cos - jax.lax.stop_gradient(cos.max(axis=1, keepdims=True)))


def centres(classes: int, dim: int, *, rngs: nnx.Rngs) -> nnx.Param:
    """Class centres (C, D) with unit-norm rows drawn uniformly on the sphere."""
    w = jax.random.normal(rngs.params(), (classes, dim))
    return nnx.Param(w / jnp.linalg.norm(w, axis=1, keepdims=True))


def register_class_weights(head: nnx.Module, class_weights: jax.Array | None) -> None:
    """Store per-class cross-entropy weights (C,) (or None) on `head` as the plain array `class_weights`.

    torch keeps them in a non-persistent buffer; here a plain array attribute, which NNX traces through
    jit but conversion, checkpoints and the optimiser do not see (the assembly recomputes it from the
    training split).
    """
    head.class_weights = None if class_weights is None else jnp.asarray(class_weights, dtype=jnp.float32)


class ClassHead(nnx.Module):
    """A head with class centres, as losses/jax/sharded.py asks it for its loss on a block of classes.

    The defaults are those of a cosine margin head trained with softmax cross-entropy (cosface, arcface,
    sphereface, sphereface_r); softmax and sphereface2 override what differs, so the sharded wrapper never
    asks what type a head is:
    - `centres()`: the class rows (C, D) and their per-class bias (C,) (None without one);
    - `shared(keep)`: the state every block's logits use whole, as keywords of `margin_logits` (SphereFace's
      annealed lambda, after counting a training step; SphereFace2's bias);
    - `block_logits(...)`: the training logits (B, C_b) and embedding norms (B, 1) on given rows, the margin
      at `labels`;
    - `block_loss(...)`: the loss of the blocks' logits, from this block's share (`block` reduces across them).
    """

    def centres(self) -> tuple[jax.Array, jax.Array | None]:
        return self.weight[...], None

    def shared(self, keep: jax.Array) -> dict[str, jax.Array]:
        return {}

    def block_logits(self, embedding, weight, class_bias, labels, **shared) -> tuple[jax.Array, jax.Array]:
        cos, norms = cosine(embedding, weight)  # (B, C_b), (B, 1)
        return self.margin_logits(cos, norms, labels, **shared), norms

    def block_loss(self, logits, norms, keep, block) -> jax.Array:
        return block.softmax_loss(logits, keep, label_smoothing=self.label_smoothing)


def reject_unsupported(head: str, class_weights: jax.Array | None, label_smoothing: float) -> None:
    """Heads whose loss is not a softmax cross-entropy cannot honour these two options."""
    if class_weights is not None:
        raise ValueError(f"{head} does not support class_weights; set loss.class_weights=none")
    if label_smoothing != 0.0:
        raise ValueError(f"{head} does not support label_smoothing; set loss.label_smoothing=0")
