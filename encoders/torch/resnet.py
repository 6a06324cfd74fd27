"""ResNet face encoders on ImageNet's ResNets: resnet18, resnet50 (torchvision's, He et al. 2016).

`self.backbone` is torchvision.models.resnet18 / resnet50 (v1.5: the stride on the bottleneck's 3x3 conv) with its
ImageNet classifier `fc` replaced by nn.Identity, so the backbone holds no `fc.*` keys and torchvision's published
.pth files load once their `fc.weight` and `fc.bias` are dropped (encoders/checkpoints/resnet.py); called alone it
returns the 512 / 2048 globally average-pooled features.
"""

from __future__ import annotations

import torch
import torchvision
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised

# Channels of the last feature map (BasicBlock / Bottleneck x 4).
VARIANTS = {"resnet18": 512, "resnet50": 2048}
# The face normalisation torchvision's ImageNet weights were trained with (RGB in [0, 1]).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Resnet(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim), all valid; pooled (B, dim).

    The ResNet's last feature map (B, C, H/32, W/32) (C = 512 or 2048) goes through one project Linear `proj`
    (C -> dim): pooled is `proj` of its global average (so it equals the mean of the tokens before `pos`), tokens
    are `proj` of each position plus a learned position embedding `pos`. `proj` and `pos` are the project's,
    initialised fresh, outside `backbone`. image_size: a multiple of 32 (the published weights were trained at
    224, but any multiple of 32 runs them).
    """

    def __init__(self, variant: str, dim: int, image_size: int):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"resnet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if image_size % 32:
            raise ValueError(f"resnet needs image_size divisible by 32, got {image_size}")
        self.backbone = getattr(torchvision.models, variant)(weights=None)
        self.backbone.fc = nn.Identity()  # the ImageNet classifier
        self.proj = nn.Linear(VARIANTS[variant], dim)
        self.pos = nn.Parameter(0.02 * torch.randn((image_size // 32) ** 2, dim))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W), normalised -> (B, C, H/32, W/32): torchvision's forward up to its average pool."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))  # (B, 64, H/4, W/4)
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        mean, std = (torch.tensor(v, device=batch["face"].device)[:, None, None] for v in (MEAN, STD))
        fmap = self.feature_map((batch["face"] - mean) / std)  # (B, C, H/32, W/32)
        x = self.proj(rearrange(fmap, "b c h w -> b (h w) c"))  # (B, N, D)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, N)
        return summarised(x + self.pos, mask, self.proj(fmap.mean((2, 3))))
