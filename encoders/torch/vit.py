"""Vision Transformer face backbones from timm: ViT-S/16 and ViT-B/16 (Dosovitskiy et al. 2021).

The backbone is timm's VisionTransformer itself (timm.create_model(..., num_classes=0)), so timm's published
files load into it (through encoders/checkpoints/vit.py, which resamples their 224 px position grid).
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised

# timm's model and its architecture numbers: patch side, width, blocks, attention heads.
VARIANTS = {
    "vit_s16": dict(timm="vit_small_patch16_224", patch=16, width=384, depth=12, heads=6),
    "vit_b16": dict(timm="vit_base_patch16_224", patch=16, width=768, depth=12, heads=12),
}
# timm's published weights of both (AugReg, Steiner et al. 2022) take (x - 0.5) / 0.5 (their pretrained_cfg).
MEAN, STD = 0.5, 0.5


class Vit(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/16)(W/16), dim); pooled = the CLS output projected.

    timm's ViT (LayerNorm eps 1e-6, exact GELU, position embeddings for the configured grid) after the
    normalisation its published weights expect. pooled is timm's pooled output (the CLS token after the final
    norm, global_pool="token") projected to dim; tokens are the summary and the patch outputs, projected alike.
    """

    def __init__(self, variant: str, dim: int, image_size: int):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"vit: unknown variant {variant!r}, expected one of {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        if image_size % v["patch"]:
            raise ValueError(f"{variant}: image_size {image_size} is not a multiple of the patch {v['patch']}")
        self.backbone = timm.create_model(
            v["timm"], pretrained=False, num_classes=0, img_size=image_size,
            patch_size=v["patch"], embed_dim=v["width"], depth=v["depth"], num_heads=v["heads"],
        )  # fmt: skip
        self.proj = nn.Linear(v["width"], dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        face = (batch["face"] - MEAN) / STD
        x = self.backbone.forward_features(face)  # (B, 1 + N, W): CLS and patches after the final norm
        pooled = self.proj(self.backbone.forward_head(x))  # (B, D)
        tokens = self.proj(x[:, self.backbone.num_prefix_tokens :])  # (B, N, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, N)
        return summarised(tokens, mask, pooled)
