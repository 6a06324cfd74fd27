"""Face <-> voice matching objectives for a shared embedding space: symmetric InfoNCE and the sigmoid loss.

InfoNCE with a learned temperature: Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision" (CLIP), ICML 2021 (arXiv 2103.00020); van den Oord et al., arXiv 1807.03748.
Sigmoid loss: Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (SigLIP), ICCV 2023
(arXiv 2303.15343). Row i of `a` (e.g. a face) and row i of `b` (e.g. a voice) are a matching pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from losses.torch.common import keep_mask, kept_mean, polar, scalar, upcast

KINDS = ("infonce", "sigmoid")


def _similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (B, B) between unit vectors of a (B, D) and b (B, D)."""
    return polar(upcast(a))[0] @ polar(upcast(b))[0].T


def _pairs(labels: torch.Tensor | None, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(matches (B, B), allowed (B, B)) bool. A match is a kept pair (i, j) with i = j, or with the same
    label when labels are given; allowed pairs are those of two kept samples. Both include the diagonal,
    so that no row of a dropped sample is empty (its loss is then finite, and weighted 0)."""
    eye = torch.eye(len(keep), dtype=torch.bool, device=keep.device)
    allowed = (keep[:, None] & keep[None, :]) | eye
    same = eye if labels is None else labels[:, None] == labels[None, :]
    return same & allowed, allowed


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per row (B,): -sum_j target_ij log softmax_j(logits_i), the softmax over the allowed columns only.

    0 log 0 is taken as 0 with a select (a product would give 0 * -inf = NaN and a NaN gradient).
    """
    log_p = F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)  # (B, B)
    return -(target * torch.where(allowed, log_p, torch.zeros_like(log_p))).sum(dim=1)


def info_nce_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    labels: torch.Tensor | None = None,
    *,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE (CLIP) -> (loss, logits (B, B)), logits = e^{logit_scale} cos(a_i, b_j).

    L = ( mean_i CE(logits[i, :], i) + mean_j CE(logits[:, j], j) ) / 2, temperature = e^{-logit_scale}.
    With labels, a pair of the same label counts as a match too: the target of a row (column) is uniform
    over its matches (our extension, so that two samples of one person in a batch are not pushed apart).
    With keep, only the kept pairs take part: the loss of the kept sub-batch.
    """
    with torch.autocast(a.device.type, enabled=False):
        similarities = _similarities(a, b)  # (B, B)
        logits = scalar(logit_scale, similarities).exp() * similarities
        keep = keep_mask(keep, logits)
        matches, allowed = _pairs(labels, keep)  # (B, B)
        target = matches.to(logits.dtype)
        rows = kept_mean(_soft_cross_entropy(logits, target / target.sum(dim=1, keepdim=True), allowed), keep)
        cols = kept_mean(_soft_cross_entropy(logits.T, target.T / target.T.sum(dim=1, keepdim=True), allowed), keep)
        return (rows + cols) / 2.0, logits


def sigmoid_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    labels: torch.Tensor | None = None,
    *,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise sigmoid loss (SigLIP) -> (loss, logits (B, B)), logits = e^{logit_scale} cos(a_i, b_j) + bias.

    L = -(1 / B) sum_i sum_j log sigmoid(z_ij logits_ij), z_ij = +1 for a match (the diagonal, or the same
    label when labels are given), -1 otherwise. With keep, B and the sums count the kept samples only.
    """
    with torch.autocast(a.device.type, enabled=False):
        similarities = _similarities(a, b)  # (B, B)
        logits = scalar(logit_scale, similarities).exp() * similarities + scalar(bias, similarities)
        keep = keep_mask(keep, logits)
        z = 2.0 * _pairs(labels, keep)[0].to(logits.dtype) - 1.0
        per_row = torch.where(keep[None, :], -F.logsigmoid(z * logits), torch.zeros_like(logits)).sum(dim=1)  # (B,)
        return kept_mean(per_row, keep), logits


class CrossModal(nn.Module):
    """Learned temperature (and bias) for `info_nce_loss` or `sigmoid_loss`: forward(a, b, labels=None, keep=None).

    Initialisation from the papers: InfoNCE logit_scale = log(1 / 0.07), clamped in the forward pass to
    at most log(100) (CLIP); sigmoid logit_scale = log(10), bias = -10 (SigLIP). `scale_init` overrides
    the initial e^{logit_scale}.
    """

    def __init__(self, kind: str = "infonce", *, scale_init: float | None = None, bias_init: float = -10.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"cross_modal kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        if scale_init is None:
            scale_init = 1.0 / 0.07 if kind == "infonce" else 10.0
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale_init)))
        self.bias = nn.Parameter(torch.tensor(float(bias_init))) if kind == "sigmoid" else None

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "infonce":
            return info_nce_loss(a, b, self.logit_scale.clamp(max=math.log(100.0)), labels, keep=keep)
        return sigmoid_loss(a, b, self.logit_scale, self.bias, labels, keep=keep)
