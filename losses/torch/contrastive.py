"""Contrastive loss on Siamese pairs with a margin.

Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006; used for
speaker verification on L2-normalised embeddings, e.g. Chung et al., "In defence of metric learning for
speaker recognition", Interspeech 2020 (arXiv 2003.11982). Not a classification head: the caller builds
pairs (a_i, b_i) and says which are the same person, or `Contrastive.in_batch` pairs every two samples of a
batch (how the model trains with --loss contrastive; docs/losses.md).
"""

from __future__ import annotations

import torch
from torch import nn

from losses.torch.common import keep_mask, kept_mean, polar, upcast


def contrastive_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    same: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    margin: float = 1.0,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs a, b (B, D) and same (B,) bool -> (loss, distances (B,)).

    L = mean_i [ same_i d_i^2 + (1 - same_i) max(0, m - d_i)^2 ] / 2,  d_i = ||a_i - b_i||,
    on unit vectors when `normalize` (then d is in [0, 2]); the mean is over the kept pairs.
    """
    with torch.autocast(a.device.type, enabled=False):
        a, b = upcast(a), upcast(b)
        if normalize:
            a, b = polar(a)[0], polar(b)[0]
        diff = a - b  # (B, D)
        distance = torch.linalg.vector_norm(diff, dim=1)  # (B,); its gradient at 0 is taken as 0
        same = same.to(diff.dtype)
        per_pair = same * diff.pow(2).sum(dim=1) + (1.0 - same) * (margin - distance).clamp_min(0.0).pow(2)
        return kept_mean(per_pair, keep_mask(keep, diff)) / 2.0, distance


class Contrastive(nn.Module):
    """`contrastive_loss` as a module (no parameters): forward(a, b, same, keep=None) -> (loss, distances)."""

    def __init__(self, *, margin: float = 1.0, normalize: bool = True):
        super().__init__()
        self.margin, self.normalize = margin, normalize

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return contrastive_loss(a, b, same, keep=keep, margin=self.margin, normalize=self.normalize)

    def in_batch(
        self, embeddings: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair i < j of a batch (B, D) with labels (B,): same = equal labels, kept when both samples are
        -> (loss, distances (B (B - 1) / 2,)). A P x K batch has P K (K - 1) / 2 same pairs among them."""
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)  # (B (B - 1) / 2,) each
        keep = keep_mask(keep, embeddings)
        return self(embeddings[i], embeddings[j], labels[i] == labels[j], keep[i] & keep[j])
