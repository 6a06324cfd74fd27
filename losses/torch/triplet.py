"""Triplet loss with in-batch mining: batch-hard and semi-hard.

Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering",
CVPR 2015 (arXiv 1503.03832): L = max(0, d(a, p) - d(a, n) + alpha), semi-hard negatives.
Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017
(arXiv 1703.07737): batch-hard mining. Not a classification head: it takes a batch of embeddings and labels
(use a sampler with several samples per class).
"""

from __future__ import annotations

import torch
from torch import nn

from losses.torch.common import keep_mask, kept_mean, polar, upcast

MININGS = ("batch_hard", "semi_hard")


def pairwise_distances(x: torch.Tensor, *, squared: bool = False) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances (squared if asked), exactly 0 on the diagonal.

    ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>, clamped at 0; the square root has a zero gradient where the
    distance is 0 (its true derivative is infinite there).
    """
    sq_norms = x.pow(2).sum(dim=1)  # (B,)
    sq = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * x @ x.T).clamp_min(0.0)  # (B, B)
    sq = sq * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))
    if squared:
        return sq
    return sq.clamp_min(1e-12).sqrt() * (sq > 0)


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    margin: float = 0.2,
    mining: str = "batch_hard",
    squared: bool = False,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplet loss over a batch (B, D) with labels (B,) -> (loss, distances (B, B)).

    batch_hard: per anchor a with a positive and a negative in the batch,
        max(0, max_p d(a, p) - min_n d(a, n) + margin); mean over those anchors (Hermans et al.).
    semi_hard: per positive pair (a, p), the negative n = argmin { d(a, n) : d(a, n) > d(a, p) } (FaceNet's
        semi-hard choice), or the farthest negative when every negative is closer than p (the fallback of
        TF-Addons' triplet_semihard_loss); max(0, d(a, p) - d(a, n) + margin), mean over positive pairs.
    Only kept samples are anchors, positives or negatives. A batch with no valid triplet gives 0 (still part
    of the graph, with a zero gradient).
    """
    if mining not in MININGS:
        raise ValueError(f"triplet mining must be one of {MININGS}, got {mining!r}")
    with torch.autocast(embeddings.device.type, enabled=False):
        x = upcast(embeddings)
        x = polar(x)[0] if normalize else x
        d = pairwise_distances(x, squared=squared)  # (B, B)
        keep = keep_mask(keep, x)
        both = keep[:, None] & keep[None, :]  # (B, B)
        same = (labels[:, None] == labels[None, :]) & both  # (B, B)
        positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        negative = both & ~same
        mine = _batch_hard if mining == "batch_hard" else _semi_hard
        per, valid = mine(d, positive, negative, margin)
        return kept_mean(per, valid), d


def _batch_hard(
    d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor losses (B,) and which anchors have a positive and a negative (B,)."""
    valid = positive.any(dim=1) & negative.any(dim=1)  # (B,)
    hardest_positive = d.masked_fill(~positive, float("-inf")).amax(dim=1)  # (B,)
    hardest_negative = d.masked_fill(~negative, float("inf")).amin(dim=1)  # (B,)
    per = torch.where(valid, hardest_positive - hardest_negative + margin, torch.zeros_like(d[0]))
    return per.clamp_min(0.0), valid


def _semi_hard(
    d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair losses (B * B,) and which pairs (a, p) are positive with a negative for a (B * B,)."""
    d_ap = d[:, :, None]  # (B, B, 1): anchor i, positive j
    d_an = d[:, None, :]  # (B, 1, B): anchor i, negative k
    beyond = negative[:, None, :] & (d_an > d_ap)  # (B, B, B)
    semi_hard = d_an.expand_as(beyond).masked_fill(~beyond, float("inf")).amin(dim=2)  # (B, B)
    farthest = d.masked_fill(~negative, float("-inf")).amax(dim=1, keepdim=True)  # (B, 1)
    chosen = torch.where(beyond.any(dim=2), semi_hard, farthest)  # (B, B)
    valid = positive & negative.any(dim=1, keepdim=True)  # (B, B)
    per = torch.where(valid, d - chosen + margin, torch.zeros_like(d))
    return per.clamp_min(0.0).flatten(), valid.flatten()


class Triplet(nn.Module):
    """`triplet_loss` as a module (no parameters): forward(embeddings, labels, keep=None) -> (loss, distances)."""

    def __init__(
        self, *, margin: float = 0.2, mining: str = "batch_hard", squared: bool = False, normalize: bool = True
    ):
        super().__init__()
        if mining not in MININGS:
            raise ValueError(f"triplet mining must be one of {MININGS}, got {mining!r}")
        self.margin, self.mining, self.squared, self.normalize = margin, mining, squared, normalize

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return triplet_loss(
            embeddings,
            labels,
            keep=keep,
            margin=self.margin,
            mining=self.mining,
            squared=self.squared,
            normalize=self.normalize,
        )
