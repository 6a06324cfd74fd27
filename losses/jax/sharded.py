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
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from losses.jax.common import ClassHead, keep_mask, kept_mean, upcast


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


@dataclass(frozen=True)
class Block:
    """This device's block of classes inside shard_map, as a head's `block_loss` sees it (losses/jax/common.py)."""

    local: jax.Array  # (B,) each sample's class as a column of this block (0 where not ours)
    mine: jax.Array  # (B,) bool: the sample is kept and its class lives in this block
    class_weights: jax.Array | None  # (C_b,) or None
    axis: str = "model"

    def softmax_loss(self, logits: jax.Array, keep: jax.Array, *, label_smoothing: float) -> jax.Array:
        kwargs = dict(keep=keep, label_smoothing=label_smoothing, class_weights=self.class_weights, axis=self.axis)
        return sharded_softmax_loss(logits, self.local, self.mine, **kwargs)

    def binary_loss(self, logits: jax.Array, keep: jax.Array, *, lamb: float, scale: float) -> jax.Array:
        """SphereFace2's weighted one-vs-all loss: each block's per-sample sum over its classes, added up."""
        positive = jax.nn.one_hot(self.local, logits.shape[1], dtype=logits.dtype) * self.mine[:, None]  # (B, C_b)
        weight = (lamb * positive + (1.0 - lamb) * (1.0 - positive)) / scale
        per_class = weight * (jax.nn.softplus(logits) - positive * logits)  # torch's binary_cross_entropy_with_logits
        return kept_mean(jax.lax.psum(per_class.sum(axis=1), self.axis), keep)

    def replicated_mean(self, values: jax.Array, keep: jax.Array) -> jax.Array:
        """The kept mean of per-sample values (B,) that every block computes alike: counted once (shard_map's
        transpose of the replicated result gives the inputs their gradient once)."""
        return kept_mean(values, keep)


def with_spare(weight: jax.Array, bias: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The block's rows plus one zero row (and bias 0): the column that takes the margin of the samples whose
    class lives in another block (so their row is all non-target logits); the caller drops it."""
    weight = jnp.concatenate([weight, jnp.zeros_like(weight[:1])])  # (C_b + 1, D)
    return weight, jnp.concatenate([bias, jnp.zeros_like(bias[:1])])


class ShardedHead(nnx.Module):
    """A class head (losses/jax/common.py ClassHead) whose C centres are split in N blocks along `axis` of `mesh`
    (C divisible by N; Auto axes).

    `head` is the unsharded head (its parameters are this module's). Calls take the batch embeddings,
    labels and keep mask (replicated along `axis`) and, when sampling, a PRNG key; they return
    (loss, logits of the kept centres (B, C or N S)), with the loss of `head` itself when sample_rate = 1.
    The head computes its own logits and loss on a block (`block_logits`, `block_loss`); this wrapper splits
    the rows and reduces across blocks.
    """

    def __init__(self, head: nnx.Module, *, mesh: Mesh, sample_rate: float = 1.0, axis: str = "model"):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"loss.sample_rate must be in (0, 1], got {sample_rate}")
        if not isinstance(head, ClassHead):
            raise TypeError(f"no sharded form for {type(head).__name__}: it has no class centres")
        self.head, self.mesh, self.sample_rate, self.axis = head, mesh, sample_rate, axis
        self.sampled = nnx.data(None)

    def centres(self) -> tuple[jax.Array, jax.Array]:
        """The centre (or linear weight) rows (C, D) and their per-class bias (C,) (zeros without one)."""
        weight, bias = self.head.centres()
        return weight, jnp.zeros(weight.shape[0]) if bias is None else bias

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
        shared = head.shared(keep)  # {name: replicated array}
        weight, bias = self.centres()  # (C, D), (C,)
        class_weights = getattr(head, "class_weights", None)  # SphereFace2 has none
        class_weights = jnp.ones(weight.shape[0]) if class_weights is None else class_weights
        per_class, replicated = P(self.axis), P()
        in_specs = (per_class, per_class, per_class, replicated, replicated, replicated, replicated, replicated)
        out_specs = (replicated, P(None, self.axis), per_class)
        block = jax.shard_map(self.block_loss, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)
        key = jax.random.key(0) if key is None else key
        loss, logits, self.sampled = block(weight, bias, class_weights, shared, embedding, labels, keep, key)
        return loss, logits

    def block_loss(self, weight, bias, class_weights, shared, embedding, labels, keep, key):
        """One block's share, inside shard_map: (loss, block logits (B, C_b or S), sampled indices (S,))."""
        head, size = self.head, weight.shape[0]
        offset = jax.lax.axis_index(self.axis) * size
        local, mine = block_labels(labels, keep, offset=offset, size=size)
        index = jnp.arange(size)
        if self.sample_rate < 1.0:
            index = self.sample(local, mine, size, key)
            weight, bias, local = weight[index], bias[index], jnp.searchsorted(index, local)
            class_weights = class_weights[index]
        targets = jnp.where(mine, local, jnp.full_like(local, weight.shape[0]))
        logits, norms = head.block_logits(embedding, *with_spare(weight, bias), targets, **shared)
        logits = logits[:, : weight.shape[0]]  # (B, C_b)
        weights = None if getattr(head, "class_weights", None) is None else class_weights
        return head.block_loss(logits, norms, keep, Block(local, mine, weights, self.axis)), logits, index
