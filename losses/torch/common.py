"""Helpers shared by the heads in this folder (not a loss: nothing here is built by `losses.build`).

Every head computes its loss in at least float32 whatever the input dtype: `upcast` lifts bf16/fp16 to
float32 (float64 stays, so gradcheck runs in double), and `cosine` runs its matmul with autocast off so a
surrounding `torch.autocast` cannot push it back to bf16.

Every loss is a per-sample masked computation with fixed shapes: `keep` (B,) bool says which samples count
(None: all of them). A dropped sample's label may be anything (-1 for an unknown class): `safe_labels` sets
it to 0 before any gather, and `kept_mean` gives it weight 0, so it changes neither the loss nor its gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Floating tensors to at least float32 (bf16/fp16 -> fp32, fp64 kept); other dtypes unchanged."""
    if not x.is_floating_point():
        return x
    return x.to(torch.promote_types(x.dtype, torch.float32))


def scalar(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A number or 0-dim tensor in the dtype and device of `like` (a tensor keeps its gradient)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def polar(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., D) -> (unit vectors (..., D), norms (..., 1)), finite for zero and for huge norms.

    `F.normalize` squares the entries first, so a float32 vector of norm ~1e20 overflows to inf and comes
    out as zeros. Dividing by the largest |entry| first (a constant for autograd: the direction is
    scale-invariant, so the gradient is exactly that of x / ||x||) keeps every square <= 1. A zero vector
    maps to direction 0 and norm 0.
    """
    peak = x.detach().abs().amax(dim=-1, keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    y = x / peak  # max |y| = 1
    return F.normalize(y, dim=-1), peak * torch.linalg.vector_norm(y, dim=-1, keepdim=True)


def cosine(embedding: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines between embeddings (B, D) and class centres (C, D): (cos (B, C), feature norms (B, 1)).

    Computed with autocast off in at least float32. The centres are normalised inside the graph (as in
    CosFace/ArcFace code), not renormalised in place (as OpenSphere does): same forward value, and the
    gradient reaching W is its tangent projection. Dividing the (B, C) product by the centre norms, instead
    of materialising normalised centres (C, D), saves a pass and a copy of W when C is large; centres are
    parameters of unit norm at initialisation, so their norms need no overflow guard.
    """
    with torch.autocast(embedding.device.type, enabled=False):
        x, norms = polar(upcast(embedding))
        w = upcast(centres)
        inverse_norms = 1.0 / torch.linalg.vector_norm(w, dim=1).clamp_min(1e-12)  # (C,)
        return (x @ w.T) * inverse_norms, norms  # (B, C), (B, 1)


def keep_mask(keep: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool mask of the samples that count, for a batch `like` (B, ...); None keeps every sample."""
    if keep is None:
        return torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
    return keep.to(device=like.device, dtype=torch.bool)


def safe_labels(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Labels (B,) with the dropped samples' labels set to class 0, so that gathers and one-hots stay in range."""
    return torch.where(keep, labels, torch.zeros_like(labels))


def kept_mean(values: torch.Tensor, keep: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum_n keep_n values_n / sum_n keep_n weight_n (weight 1 by default): the mean over the kept samples.

    No kept sample (or a zero total weight) gives 0 with a zero gradient, not 0 / 0. Dropped values are
    selected away (not multiplied by 0), so a non-finite value there cannot reach the loss.
    """
    total = torch.where(keep, values, torch.zeros_like(values)).sum()
    count = keep.to(values.dtype) if weight is None else torch.where(keep, weight, torch.zeros_like(weight))
    count = count.sum()
    return total / torch.where(count != 0, count, torch.ones_like(count))


def shifted_logits(scale: torch.Tensor | float, cos: torch.Tensor) -> torch.Tensor:
    """r (cos - max_j cos) (B, C) for a scale r ((B, 1) or a number): the logits r cos shifted by their row max.

    A softmax cross-entropy ignores a shift per row, so it gives the loss of r cos, while every entry here is
    <= 0 exactly. Forming r cos first is not safe under XLA (jax): it recomputes r cos inside the fusion of
    r cos - max(r cos) as a fused multiply-add, off by ~1e-7 |r cos|, which overflows exp when r = ||x|| is
    beyond ~1e9. The max is a constant for the gradient (the shift's gradient is zero anyway).
    """
    return scale * (cos - cos.detach().amax(dim=1, keepdim=True))


def centres(classes: int, dim: int) -> nn.Parameter:
    """Class centres (C, D) with unit-norm rows drawn uniformly on the sphere."""
    w = torch.randn(classes, dim)
    return nn.Parameter(w / w.norm(dim=1, keepdim=True))


def register_class_weights(head: nn.Module, class_weights: torch.Tensor | None) -> None:
    """Store per-class cross-entropy weights (C,) (or None) on `head` as the buffer `class_weights`.

    A buffer follows `.to(device)`; it is not persistent because the assembly recomputes it from the
    training split, so checkpoints do not carry it.
    """
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    head.register_buffer("class_weights", weights, persistent=False)


class ClassHead(nn.Module):
    """A head with class centres, as losses/torch/sharded.py asks it for its loss on a block of classes.

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

    def centres(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, None

    def shared(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def block_logits(self, embedding, weight, class_bias, labels, **shared) -> tuple[torch.Tensor, torch.Tensor]:
        cos, norms = cosine(embedding, weight)  # (B, C_b), (B, 1)
        return self.margin_logits(cos, norms, labels, **shared), norms

    def block_loss(self, logits, norms, keep, block) -> torch.Tensor:
        return block.softmax_loss(logits, keep, label_smoothing=self.label_smoothing)


def reject_unsupported(head: str, class_weights: torch.Tensor | None, label_smoothing: float) -> None:
    """Heads whose loss is not a softmax cross-entropy cannot honour these two options."""
    if class_weights is not None:
        raise ValueError(f"{head} does not support class_weights; set loss.class_weights=none")
    if label_smoothing != 0.0:
        raise ValueError(f"{head} does not support label_smoothing; set loss.label_smoothing=0")
