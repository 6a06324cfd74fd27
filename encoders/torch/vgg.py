"""VGG16 face encoder on ImageNet's VGG16 (torchvision's, Simonyan & Zisserman 2015, configuration D, no BatchNorm).

`self.backbone` is torchvision.models.vgg16 without the ImageNet classifier's last layer (classifier.6, fc8
4096 -> 1000): 13 3x3 convs with ReLU and five 2x2 max pools (`features`), an adaptive average pool to 7 x 7,
then fc6 and fc7 (25088 -> 4096 -> 4096, each with ReLU and dropout 0.5), whose 4096 outputs are the embedding,
as in the VGG-Face descriptor (Parkhi et al. 2015). torchvision's published .pth files load once classifier.6 is
dropped (encoders/checkpoints/vgg.py); called alone the backbone returns fc7's features.
"""

from __future__ import annotations

import torch
import torchvision
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised

# Channels of the last feature map and width of the embedding (fc7).
VARIANTS = {"vgg16": (512, 4096)}
# The face normalisation torchvision's ImageNet weights were trained with (RGB in [0, 1]).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Vgg(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim), all valid; pooled (B, dim).

    pooled: fc7's 4096 features projected to dim by `embed`. Tokens: each position of the last conv feature map
    (512 channels, H/32 x W/32, before the 7 x 7 average pool) projected to dim by `proj`, plus a learned position
    embedding `pos`. `embed`, `proj` and `pos` are the project's, initialised fresh, outside `backbone`.
    image_size: a multiple of 32. The published weights were trained at 224 (a 7 x 7 map); torchvision's adaptive
    average pool brings any other map to 7 x 7 (averaging larger ones, repeating positions of smaller ones), so fc6
    keeps its shape and the published weights load at every size.
    """

    def __init__(self, variant: str, dim: int, image_size: int):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"vgg variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if image_size % 32:
            raise ValueError(f"vgg needs image_size divisible by 32, got {image_size}")
        channels, width = VARIANTS[variant]
        self.backbone = getattr(torchvision.models, variant)(weights=None)
        self.backbone.classifier = self.backbone.classifier[:6]  # without fc8, the ImageNet classifier
        self.embed = nn.Linear(width, dim)
        self.proj = nn.Linear(channels, dim)
        self.pos = nn.Parameter(0.02 * torch.randn((image_size // 32) ** 2, dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        mean, std = (torch.tensor(v, device=batch["face"].device)[:, None, None] for v in (MEAN, STD))
        b = self.backbone
        fmap = b.features((batch["face"] - mean) / std)  # (B, 512, H/32, W/32)
        fc7 = b.classifier(rearrange(b.avgpool(fmap), "b c h w -> b (c h w)"))  # (B, 4096)
        x = self.proj(rearrange(fmap, "b c h w -> b (h w) c")) + self.pos  # (B, N, D)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, N)
        return summarised(x, mask, self.embed(fc7))
