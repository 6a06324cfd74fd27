"""Sharded class centres: each rank holds a block of C / N centres (model-parallel margin heads, as Partial FC).

An, Deng et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021 (arXiv
2010.05222), following insightface's partial_fc code. Every rank gathers the batch embeddings of all ranks
(`gather_batch`), computes the cosines of that global batch against its own block of centres, applies its
head's margin to the targets that live in the block, and the softmax heads (softmax, cosface, arcface,
sphereface, sphereface_r) combine the blocks with an all-reduced row max and all-reduced sums. SphereFace2
is a sum of one-vs-all binary losses with no normalisation across classes: its blocks are independent and
only the per-block loss sums are added up.

Gradients: everything after the sums is computed identically on every rank, so the sum's backward is the
identity (`_sum_ranks`), and each rank's centres get exactly their gradient of the global loss. The batch
gather's backward sums the embedding gradients of all blocks and returns each rank its own rows. A
replicated parameter (SphereFace2's bias) gets its block's share on each rank: sum it across ranks.

Negative-centre sampling (`sample_rate` r < 1, Partial FC's r): each forward keeps, per block, the centres
of the block's classes in the batch plus random others, S = min(C_b, max(ceil(r C_b), B)) in all (a fixed
count that always holds every positive), and the loss is that of the head restricted to the sampled
centres. `sampled` holds the block's sampled centre indices of the last forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from losses.torch.common import ClassHead, keep_mask, kept_mean, upcast


class _SumRanks(torch.autograd.Function):
    """all_reduce(sum) whose backward is the identity: right because its result is used alike on every rank."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _GatherBatch(torch.autograd.Function):
    """all_gather of equal-sized batches along dim 0; backward sums the gradients of all ranks, keeps our rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.rows = group, dist.get_rank(group), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None


def _sum_ranks(x: torch.Tensor, group=None) -> torch.Tensor:
    return _SumRanks.apply(x, group)


def gather_batch(x: torch.Tensor, group=None) -> torch.Tensor:
    """This rank's (b, ...) -> the global batch (N b, ...) in rank order, with gradient back to our rows."""
    return _GatherBatch.apply(x, group)


def block_labels(labels: torch.Tensor, keep: torch.Tensor, *, offset: int, size: int):
    """Global labels (B,) -> (column in this block (B,), in this block and kept (B,) bool); 0 where not ours."""
    local = labels - offset
    mine = keep & (local >= 0) & (local < size)
    return torch.where(mine, local, torch.zeros_like(local)), mine


def sharded_softmax_loss(
    logits: torch.Tensor,
    local: torch.Tensor,
    mine: torch.Tensor,
    *,
    keep: torch.Tensor,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    """`softmax_loss` of the logits of all blocks, from this rank's block (B, C_b) and its labels.

    logsumexp over classes from the all-reduced row max and sum of exp; the target logit, its class weight
    and the smoothing sums from the block that holds them (over the sampled centres when sampling).
    """
    logits = upcast(logits)  # (B, C_b)
    peak = logits.detach().amax(dim=1)  # (B,)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    shifted = logits - peak[:, None]  # (B, C_b), <= 0 for every block
    w = torch.ones_like(shifted[0]) if class_weights is None else class_weights.to(shifted)  # (C_b,)
    target = shifted.gather(1, local[:, None])[:, 0]  # (B,)
    parts = torch.stack(
        [
            shifted.exp().sum(dim=1),
            torch.where(mine, target, torch.zeros_like(target)),
            torch.where(mine, w[local], torch.zeros_like(target)),
            (shifted * w).sum(dim=1),
            (w.sum() + 0 * target),
            torch.full_like(target, shifted.shape[1]),
        ],
        dim=1,
    )  # (B, 6)
    sum_exp, target, w_y, w_shifted, w_sum, classes = _sum_ranks(parts, group).unbind(dim=1)
    log_z = sum_exp.log()  # (B,)
    smooth = (w_shifted - log_z * w_sum) / classes  # (B,) sum_c w_c log p_c / C
    per_sample = -(1.0 - label_smoothing) * w_y * (target - log_z) - label_smoothing * smooth
    return kept_mean(per_sample, keep, w_y)


@dataclass(frozen=True)
class Block:
    """This rank's block of classes in one forward, as a head's `block_loss` sees it (losses/torch/common.py)."""

    local: torch.Tensor  # (B,) each sample's class as a column of this block (0 where not ours)
    mine: torch.Tensor  # (B,) bool: the sample is kept and its class lives in this block
    class_weights: torch.Tensor | None  # (C_b,) or None
    group: object = None

    def softmax_loss(self, logits: torch.Tensor, keep: torch.Tensor, *, label_smoothing: float) -> torch.Tensor:
        kwargs = dict(keep=keep, label_smoothing=label_smoothing, class_weights=self.class_weights, group=self.group)
        return sharded_softmax_loss(logits, self.local, self.mine, **kwargs)

    def binary_loss(self, logits: torch.Tensor, keep: torch.Tensor, *, lamb: float, scale: float) -> torch.Tensor:
        """SphereFace2's weighted one-vs-all loss: each block's per-sample sum over its classes, added up."""
        positive = F.one_hot(self.local, logits.shape[1]).to(logits.dtype) * self.mine[:, None]  # (B, C_b)
        weight = (lamb * positive + (1.0 - lamb) * (1.0 - positive)) / scale
        per_class = F.binary_cross_entropy_with_logits(logits, positive, weight=weight, reduction="none")
        return kept_mean(_sum_ranks(per_class.sum(dim=1), self.group), keep)

    def replicated_mean(self, values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The kept mean of per-sample values (B,) that every rank computes alike: 1 / N of it from each rank."""
        return kept_mean(_sum_ranks(values / dist.get_world_size(self.group), self.group), keep)


def with_spare(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The block's rows plus one zero row (and bias 0): the column that takes the margin of the samples whose
    class lives in another block (so their row is all non-target logits); the caller drops it."""
    weight = torch.cat([weight, weight.new_zeros(1, weight.shape[1])])  # (C_b + 1, D)
    return weight, None if bias is None else torch.cat([bias, bias.new_zeros(1)])


class ShardedHead(nn.Module):
    """A class head (losses/torch/common.py ClassHead) whose centres are split across ranks: this rank holds
    classes [offset, offset + C_b).

    `head` holds this rank's block: the rows [offset, offset + C_b) of a head built for all C classes (so what
    depends on C, SphereFace2's initial bias, is the whole head's); `classes` is C. forward takes the global batch
    (`gather_batch` of every rank's embeddings) and global labels and returns (loss, this block's logits);
    the loss is the same number on every rank. The head computes its own logits and loss on the block
    (`block_logits`, `block_loss`); this wrapper picks the rows and reduces across ranks.
    """

    def __init__(self, head: nn.Module, *, offset: int, classes: int, sample_rate: float = 1.0, group=None):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"loss.sample_rate must be in (0, 1], got {sample_rate}")
        if not isinstance(head, ClassHead):
            raise TypeError(f"no sharded form for {type(head).__name__}: it has no class centres")
        self.head, self.offset, self.classes, self.sample_rate, self.group = head, offset, classes, sample_rate, group
        self.sampled: torch.Tensor | None = None

    def centres(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This block's centre (or linear weight) rows (C_b, D) and their per-class bias (or None)."""
        return self.head.centres()

    def sample(self, local: torch.Tensor, mine: torch.Tensor, size: int) -> torch.Tensor:
        """Sorted indices (S,) of the kept centres: every positive of the block plus random negatives."""
        count = min(size, max(math.ceil(self.sample_rate * size), local.shape[0]))
        score = torch.rand(size, device=local.device)
        score[local[mine]] = 2.0  # positives first
        return score.topk(count).indices.sort().values

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None):
        head = self.head
        keep = keep_mask(keep, embedding)
        shared = head.shared(keep)
        weight, bias = self.centres()  # (C_b, D), (C_b,) or None
        local, mine = block_labels(labels, keep, offset=self.offset, size=weight.shape[0])
        class_weights = getattr(head, "class_weights", None)  # SphereFace2 has none
        if self.sample_rate < 1.0:
            self.sampled = self.sample(local, mine, weight.shape[0])
            weight, local = weight[self.sampled], torch.searchsorted(self.sampled, local)
            bias = None if bias is None else bias[self.sampled]
            class_weights = None if class_weights is None else class_weights[self.sampled]
        spare = weight.shape[0]
        targets = torch.where(mine, local, torch.full_like(local, spare))
        logits, norms = head.block_logits(embedding, *with_spare(weight, bias), targets, **shared)
        logits = logits[:, :spare]  # (B, C_b)
        return head.block_loss(logits, norms, keep, Block(local, mine, class_weights, self.group)), logits
