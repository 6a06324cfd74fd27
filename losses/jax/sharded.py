"""Sharded class centres: the centres split into N blocks along the "model" mesh axis (as Partial FC).

An, Deng et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021 (arXiv
2010.05222), following insightface's partial_fc code. The twin of losses/torch/sharded.py: inside a
`shard_map` over the "model" axis every device holds C / N centres, computes the cosines of the whole batch
against its block, applies its head's margin to the targets that live in the block, and the softmax heads
(softmax, cosface, arcface, sphereface, sphereface_r) combine the blocks with a `pmax` row max and `psum`
sums. SphereFace2 is a sum of one-vs-all binary losses with no normalisation across classes: its blocks
are independent and only the per-block loss sums are added up.

Gradients need no custom rule here: shard_map's transpose of `psum` over a replicated result gives every
block its gradient of the global loss, and the replicated inputs (embeddings, SphereFace2's bias) get the
sum over blocks. The torch twin wraps a head holding one rank's block; this one wraps the head with all C
centres (a sharded array on a real mesh) and splits it in `shard_map`.

Negative-centre sampling (`sample_rate` r < 1, Partial FC's r): each call keeps, per block, the centres
of the block's classes in the batch plus random others, S = min(C_b, max(ceil(r C_b), B)) in all (a fixed
count that always holds every positive), and the loss is that of the head restricted to the sampled
centres. `sampled` holds each block's sampled centre indices (within the block, (N S,)) of the last call.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from losses.jax.common import cosine, keep_mask, kept_mean, upcast
from losses.jax.softmax import Softmax
from losses.jax.sphereface import Sphereface
from losses.jax.sphereface2 import Sphereface2
from losses.jax.sphereface_r import SpherefaceR


def block_labels(labels: jax.Array, keep: jax.Array, *, offset: jax.Array | int, size: int):
    """Global labels (B,) -> (column in this block (B,), in this block and kept (B,) bool); 0 where not ours."""
    local = labels - offset
    mine = keep & (local >= 0) & (local < size)
    return jnp.where(mine, local, jnp.zeros_like(local)), mine


def sharded_softmax_loss(
    logits: jax.Array,
    local: jax.Array,
    mine: jax.Array,
    *,
    keep: jax.Array,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
    axis: str = "model",
) -> jax.Array:
    """`softmax_loss` of the logits of all blocks, from this device's block (B, C_b) and its labels.

    logsumexp over classes from the `pmax` row max and `psum` of exp; the target logit, its class weight
    and the smoothing sums from the block that holds them (over the sampled centres when sampling).
    """
    logits = upcast(logits)  # (B, C_b)
    peak = jax.lax.pmax(jax.lax.stop_gradient(logits).max(axis=1), axis)  # (B,)
    shifted = logits - peak[:, None]  # (B, C_b), <= 0 for every block
    w = jnp.ones_like(shifted[0]) if class_weights is None else class_weights.astype(shifted.dtype)  # (C_b,)
    target = jnp.take_along_axis(shifted, local[:, None], axis=1)[:, 0]  # (B,)
    parts = jnp.stack(
        [
            jnp.exp(shifted).sum(axis=1),
            jnp.where(mine, target, jnp.zeros_like(target)),
            jnp.where(mine, w[local], jnp.zeros_like(target)),
            (shifted * w).sum(axis=1),
            jnp.full_like(target, w.sum()),
            jnp.full_like(target, shifted.shape[1]),
        ],
        axis=1,
    )  # (B, 6)
    sum_exp, target, w_y, w_shifted, w_sum, classes = jax.lax.psum(parts, axis).T
    log_z = jnp.log(sum_exp)  # (B,)
    smooth = (w_shifted - log_z * w_sum) / classes  # (B,) sum_c w_c log p_c / C
    per_sample = -(1.0 - label_smoothing) * w_y * (target - log_z) - label_smoothing * smooth
    return kept_mean(per_sample, keep, w_y)


def margin_logits(head: nnx.Module, cos: jax.Array, norms: jax.Array, local: jax.Array, mine: jax.Array, *, lamb, bias):
    """The margin logits (B, C_b) of `head` on a block of cosines, with the target margin where `mine`.

    Asks the head for its own training logits (its margin_logits) on the block plus one spare column that
    takes the margin of the samples whose class lives in another block (so their row is all non-target
    logits), then drops it.
    """
    spare = cos.shape[1]
    cos = jnp.concatenate([upcast(cos), jnp.zeros_like(upcast(cos)[:, :1])], axis=1)  # (B, C_b + 1)
    labels = jnp.where(mine, local, jnp.full_like(local, spare))
    if not hasattr(head, "margin_logits"):
        raise TypeError(f"no sharded form for {type(head).__name__}")
    logits = head.margin_logits(cos, norms, labels, lamb=lamb, bias=bias)
    return logits[:, :spare]


class ShardedHead(nnx.Module):
    """A margin head whose C centres are split in N blocks along `axis` of `mesh` (C divisible by N; Auto axes).

    `head` is the unsharded head (its parameters are this module's). Calls take the batch embeddings,
    labels and keep mask (replicated along `axis`) and, when sampling, a PRNG key; they return
    (loss, logits of the kept centres (B, C or N S)), with the loss of `head` itself when sample_rate = 1.
    """

    def __init__(self, head: nnx.Module, *, mesh: Mesh, sample_rate: float = 1.0, axis: str = "model"):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"loss.sample_rate must be in (0, 1], got {sample_rate}")
        self.head, self.mesh, self.sample_rate, self.axis = head, mesh, sample_rate, axis
        self.sampled = nnx.data(None)

    def centres(self) -> tuple[jax.Array, jax.Array]:
        """The centre (or linear weight) rows (C, D) and the per-class or shared bias (zeros when none)."""
        head = self.head
        if isinstance(head, Softmax):
            return head.linear.kernel[...].T, head.linear.bias[...]
        return head.weight[...], head.bias[...] if isinstance(head, Sphereface2) else jnp.zeros(())

    def sample(self, local: jax.Array, mine: jax.Array, size: int, key: jax.Array) -> jax.Array:
        """Sorted indices (S,) of the kept centres: every positive of the block plus random negatives."""
        count = min(size, max(math.ceil(self.sample_rate * size), local.shape[0]))
        key = jax.random.fold_in(key, jax.lax.axis_index(self.axis))  # other negatives in every block
        positive = jnp.zeros(size, dtype=bool).at[local].max(mine)
        score = jnp.where(positive, 2.0, jax.random.uniform(key, (size,)))  # positives first
        return jnp.sort(jax.lax.top_k(score, count)[1])

    def __call__(self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None, *, key=None):
        head = self.head
        keep = keep_mask(keep, embedding)
        if isinstance(head, Sphereface) and not head.deterministic:
            head.step[...] = head.step[...] + keep.any()
        lamb = head.lamb() if isinstance(head, Sphereface) else jnp.zeros(())
        weight, bias = self.centres()  # (C, D), (C,) or ()
        class_weights = getattr(head, "class_weights", None)
        class_weights = jnp.ones(weight.shape[0]) if class_weights is None else class_weights
        per_class = P(self.axis)
        shared = P()
        in_specs = (per_class, per_class if bias.ndim else shared, per_class, shared, shared, shared, shared, shared)
        out_specs = (shared, P(None, self.axis), per_class)
        block = jax.shard_map(self.block_loss, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)
        key = jax.random.key(0) if key is None else key
        loss, logits, self.sampled = block(weight, bias, class_weights, lamb, embedding, labels, keep, key)
        return loss, logits

    def block_loss(self, weight, bias, class_weights, lamb, embedding, labels, keep, key):
        """One block's share, inside shard_map: (loss, block logits (B, C_b or S), sampled indices (S,))."""
        head, size = self.head, weight.shape[0]
        offset = jax.lax.axis_index(self.axis) * size
        local, mine = block_labels(labels, keep, offset=offset, size=size)
        index = jnp.arange(size)
        if self.sample_rate < 1.0:
            index = self.sample(local, mine, size, key)
            weight, local = weight[index], jnp.searchsorted(index, local)
            bias, class_weights = (bias[index] if bias.ndim else bias), class_weights[index]
        if isinstance(head, Softmax):
            logits = upcast(embedding) @ upcast(weight).T + upcast(bias)  # (B, C_b)
        else:
            cos, norms = cosine(embedding, weight)  # (B, C_b), (B, 1)
            logits = margin_logits(head, cos, norms, local, mine, lamb=lamb, bias=bias)
        if isinstance(head, Sphereface2):
            return self.binary_loss(logits, local, mine, keep), logits, index
        smoothing = getattr(head, "label_smoothing", 0.0)
        weights = None if getattr(head, "class_weights", None) is None else class_weights
        kwargs = dict(keep=keep, label_smoothing=smoothing, class_weights=weights, axis=self.axis)
        loss = sharded_softmax_loss(logits, local, mine, **kwargs)
        if isinstance(head, SpherefaceR) and head.normalization == "soft":  # replicated: counted once
            loss = loss + head.penalty * kept_mean(jnp.abs(norms[:, 0] - head.scale), keep)
        return loss, logits, index

    def binary_loss(self, logits: jax.Array, local: jax.Array, mine: jax.Array, keep: jax.Array) -> jax.Array:
        """SphereFace2's one-vs-all loss: a sum over classes, so each block's sum is independent; add them up."""
        head = self.head
        positive = jax.nn.one_hot(local, logits.shape[1], dtype=logits.dtype) * mine[:, None]  # (B, C_b)
        weight = (head.lamb * positive + (1.0 - head.lamb) * (1.0 - positive)) / head.scale
        per_class = weight * (jax.nn.softplus(logits) - positive * logits)  # torch's binary_cross_entropy_with_logits
        return kept_mean(jax.lax.psum(per_class.sum(axis=1), self.axis), keep)
