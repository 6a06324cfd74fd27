"""SphereFace-R: multiplicative angular margin with characteristic gradient detachment.

Liu, Wen, Raj, Singh, Weller, "SphereFace Revived: Unifying Hyperspherical Face Recognition", TPAMI 2022
(arXiv 2109.05565), following the authors' OpenSphere code (model/head/spherefacer.py).
"""

from __future__ import annotations

import math

import torch

from losses.torch.common import (
    ClassHead,
    centres,
    cosine,
    keep_mask,
    kept_mean,
    register_class_weights,
    safe_labels,
    shifted_logits,
    upcast,
)
from losses.torch.softmax import softmax_loss

VERSIONS = ("v0", "v1", "v2")
NORMALIZATIONS = ("none", "hard", "soft")


def sphereface_r_cosines(cos: torch.Tensor, labels: torch.Tensor, *, version: str, margin: float) -> torch.Tensor:
    """Margin-adjusted cosines (B, C) whose forward value has the margin and whose gradient is that of cos.

        v0: target psi(theta) = (-1)^k cos(m theta) - 2k, k = floor(m theta / pi)  (original SphereFace)
        v1: target cos(min(m theta, pi))
        v2: non-targets cos(theta / m), target unchanged (the margin pulls the other classes closer)
    Characteristic gradient detachment: returns cos + stopgrad(f(cos) - cos), so d out / d cos = 1.
    """
    cos = upcast(cos)  # (B, C)
    with torch.no_grad():
        if version == "v2":
            adjusted = torch.cos(torch.acos(cos.clamp(-1.0, 1.0)) / margin)
            adjusted = adjusted.scatter(1, labels[:, None], cos.gather(1, labels[:, None]))
        else:
            m_theta = margin * torch.acos(cos.gather(1, labels[:, None]).clamp(-1.0, 1.0))  # (B, 1)
            if version == "v0":
                k = torch.floor(m_theta / math.pi)
                target = (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(m_theta) - 2.0 * k
            else:
                target = torch.cos(m_theta.clamp(0.0, math.pi))
            adjusted = cos.scatter(1, labels[:, None], target)
    return cos + (adjusted - cos).detach()


def sphereface_r_loss(
    cos: torch.Tensor,
    norms: torch.Tensor,
    labels: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    version: str = "v2",
    normalization: str = "hard",
    margin: float = 1.4,
    scale: float = 60.0,
    penalty: float = 0.01,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SphereFace-R cross-entropy from cosines (B, C) and feature norms (B, 1) -> (loss, logits (B, C)).

    logits = r (cos theta + stopgrad(margin cosine - cos theta)), with the feature normalisation scheme
        none: r = ||x||            hard: r = s            soft: r = ||x||, loss += penalty mean | ||x|| - s |
    Both means are over the kept samples.
    """
    if version not in VERSIONS or normalization not in NORMALIZATIONS:
        raise ValueError(f"sphereface_r: version in {VERSIONS}, normalization in {NORMALIZATIONS}")
    norms = upcast(norms)  # (B, 1)
    keep = keep_mask(keep, cos)
    labels = safe_labels(labels, keep)
    adjusted = sphereface_r_cosines(cos, labels, version=version, margin=margin)  # (B, C)
    r = scale if normalization == "hard" else norms
    loss, _ = softmax_loss(
        shifted_logits(r, adjusted),  # the softmax of r * adjusted, safe for huge feature norms
        labels,
        keep=keep,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
    )
    if normalization == "soft":
        loss = loss + penalty * kept_mean((norms[:, 0] - scale).abs(), keep)
    return loss, r * adjusted


class SpherefaceR(ClassHead):
    """SphereFace-R head with normalised class centres and no bias.

    Defaults are OpenSphere's published SphereFace-R training config (vggface2_sfnet20_spherefacer.yml:
    SphereFaceR_H, v2, s = 60, m = 1.4); its code's class defaults are v0, s = 30, m = 1.5. The soft
    scheme's penalty 0.01 is OpenSphere's `t`. Differences from OpenSphere, all on purpose: no loss
    weight `lw` (a constant factor lw / s = 50 / s on the cross-entropy, i.e. a learning-rate scale; note
    it also changes the relative weight of the soft penalty); no stepped margin schedule for the none/soft
    schemes (OpenSphere marks those two schemes as not fully tested); angles are clamped to [0, pi]
    exactly rather than with 1e-5 slack (the detached branch needs no acos gradient).
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        version: str = "v2",
        normalization: str = "hard",
        margin: float = 1.4,
        scale: float = 60.0,
        penalty: float = 0.01,
        label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        if version not in VERSIONS or normalization not in NORMALIZATIONS:
            raise ValueError(f"sphereface_r: version in {VERSIONS}, normalization in {NORMALIZATIONS}")
        if margin < 1.0:
            raise ValueError(f"sphereface_r margin must be >= 1, got {margin}")
        self.weight = centres(classes, dim)  # (C, D)
        self.version, self.normalization = version, normalization
        self.margin, self.scale, self.penalty, self.label_smoothing = margin, scale, penalty, label_smoothing
        register_class_weights(self, class_weights)

    def block_loss(self, logits, norms, keep, block) -> torch.Tensor:
        """The cross-entropy, plus the soft scheme's penalty | ||x|| - s | (the same on every block)."""
        loss = block.softmax_loss(logits, keep, label_smoothing=self.label_smoothing)
        if self.normalization == "soft":
            loss = loss + self.penalty * block.replicated_mean((norms[:, 0] - self.scale).abs(), keep)
        return loss

    def margin_logits(
        self, cos: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, *, lamb=None, bias=None
    ) -> torch.Tensor:
        """The training logits (B, C) of cosines (B, C), embedding norms (B, 1) and labels: the margin applied as
        the loss applies it (`block_logits` calls it on a block of classes). `lamb` and `bias` stand in for
        a SphereFace head's annealed lambda and a SphereFace2 head's bias where the caller holds them."""
        kwargs = dict(version=self.version, normalization=self.normalization, margin=self.margin, scale=self.scale)
        return sphereface_r_loss(cos, norms, labels, **kwargs)[1]

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C) plain logits r cos theta (r = s for hard normalisation, else ||x||)."""
        cos, norms = cosine(embedding, self.weight)
        return (self.scale if self.normalization == "hard" else norms) * cos

    def forward(
        self, embedding: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, norms = cosine(embedding, self.weight)  # (B, C), (B, 1)
        return sphereface_r_loss(
            cos,
            norms,
            labels,
            keep=keep,
            version=self.version,
            normalization=self.normalization,
            margin=self.margin,
            scale=self.scale,
            penalty=self.penalty,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )
