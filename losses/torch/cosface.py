"""CosFace / AM-Softmax: additive cosine margin.

Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018 (arXiv 1801.09414);
Wang et al., "Additive Margin Softmax for Face Verification", IEEE SPL 2018 (arXiv 1801.05599).
"""

from __future__ import annotations

import torch

from losses.torch.common import ClassHead, centres, cosine, keep_mask, register_class_weights, safe_labels, upcast
from losses.torch.softmax import softmax_loss


def cosface_loss(
    cos: torch.Tensor,
    labels: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    scale: float = 64.0,
    margin: float = 0.35,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the logits s (cos theta_j - m [j = y]) -> (loss, logits (B, C)).

    L = -log( e^{s (cos theta_y - m)} / (e^{s (cos theta_y - m)} + sum_{j != y} e^{s cos theta_j}) ).
    The margin is a constant, so the gradient is that of s cos theta. Mean over the kept samples.
    """
    cos = upcast(cos)  # (B, C)
    keep = keep_mask(keep, cos)
    labels = safe_labels(labels, keep)
    target = cos.gather(1, labels[:, None]) - margin  # (B, 1)
    logits = scale * cos.scatter(1, labels[:, None], target)
    return softmax_loss(logits, labels, keep=keep, label_smoothing=label_smoothing, class_weights=class_weights)


class Cosface(ClassHead):
    """CosFace head. Defaults s = 64, m = 0.35 (CosFace paper; s = 30 is the other common choice)."""

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        scale: float = 64.0,
        margin: float = 0.35,
        label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        self.weight = centres(classes, dim)  # (C, D)
        self.scale, self.margin, self.label_smoothing = scale, margin, label_smoothing
        register_class_weights(self, class_weights)

    def margin_logits(
        self, cos: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, *, lamb=None, bias=None
    ) -> torch.Tensor:
        """The training logits (B, C) of cosines (B, C), embedding norms (B, 1) and labels: the margin applied as
        the loss applies it (`block_logits` calls it on a block of classes). `lamb` and `bias` stand in for
        a SphereFace head's annealed lambda and a SphereFace2 head's bias where the caller holds them."""
        return cosface_loss(cos, labels, scale=self.scale, margin=self.margin)[1]

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C) s cos theta."""
        return self.scale * cosine(embedding, self.weight)[0]

    def forward(
        self, embedding: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, _ = cosine(embedding, self.weight)  # (B, C)
        return cosface_loss(
            cos,
            labels,
            keep=keep,
            scale=self.scale,
            margin=self.margin,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )
