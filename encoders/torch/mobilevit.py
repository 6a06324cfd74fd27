"""MobileViT (v1) face backbones from timm: XXS, XS and S (Mehta & Rastegari 2022).

The backbone is timm's ByobNet built from its mobilevit_* config (timm.create_model(..., num_classes=0)), so
timm's published files (ported from Apple's cvnets) load into it through encoders/checkpoints/mobilevit.py.
"""

from __future__ import annotations

import timm
import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised

# timm's model and its architecture numbers (timm/models/mobilevit.py): stem channels, inverted-residual expansion,
# final 1x1 conv channels, and per stage (blocks, channels, stride, transformer width, transformer blocks), where a
# stage with a transformer width ends with a MobileViT block after its inverted residuals.
VARIANTS = {
    "mobilevit_xxs": dict(
        timm="mobilevit_xxs", stem=16, expansion=2.0, features=320,
        stages=((1, 16, 1, 0, 0), (3, 24, 2, 0, 0), (1, 48, 2, 64, 2), (1, 64, 2, 80, 4), (1, 80, 2, 96, 3)),
    ),
    "mobilevit_xs": dict(
        timm="mobilevit_xs", stem=16, expansion=4.0, features=384,
        stages=((1, 32, 1, 0, 0), (3, 48, 2, 0, 0), (1, 64, 2, 96, 2), (1, 80, 2, 120, 4), (1, 96, 2, 144, 3)),
    ),
    "mobilevit_s": dict(
        timm="mobilevit_s", stem=16, expansion=4.0, features=640,
        stages=((1, 32, 1, 0, 0), (3, 64, 2, 0, 0), (1, 96, 2, 144, 2), (1, 128, 2, 192, 4), (1, 160, 2, 240, 3)),
    ),
}  # fmt: skip


class Mobilevit(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim) (sides rounded up); pooled = their mean.

    timm's MobileViT on the face as it is (cvnets trained on [0, 1] pixels without mean/std normalisation: timm's
    pretrained_cfg has mean 0, std 1). tokens are the positions of the last feature map (after final_conv)
    projected to dim; pooled is timm's pooled output (the global average) projected alike. Any image_size works:
    a MobileViT block resizes a map with an odd side to the next multiple of its 2 x 2 patches and back.
    """

    def __init__(self, variant: str, dim: int, image_size: int):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"mobilevit: unknown variant {variant!r}, expected one of {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        self.backbone = timm.create_model(v["timm"], pretrained=False, num_classes=0)
        self.proj = nn.Linear(v["features"], dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        fmap = self.backbone.forward_features(batch["face"])  # (B, F, H/32, W/32)
        pooled = self.proj(self.backbone.forward_head(fmap))  # (B, D)
        tokens = self.proj(rearrange(fmap, "b c h w -> b (h w) c"))  # (B, N, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, N)
        return summarised(tokens, mask, pooled)
