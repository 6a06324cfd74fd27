"""A small residual CNN face encoder; its tokens are the positions of the last feature map."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised

WIDTHS = (32, 64, 128)  # channels of the three residual stages; each halves the resolution


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias: BN has one) and BatchNorm."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class ResBlock(nn.Module):
    """ResNet basic block (He et al. 2016): relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, stride), nn.ReLU(), conv_bn(cout, cout))
        # Every block here changes the shape (stride 2), so the shortcut is ResNet's 1x1 projection.
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class FaceCnn(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/8)(W/8), dim), all valid; pooled = token mean.

    A conv-BN-ReLU stem, then three stride-2 residual blocks. Each position of the last feature map
    is projected to dim and gets a learned position embedding (so that fusion attention knows where
    a token sits); pooled is the mean of the projected features (global average pooling).
    """

    def __init__(self, dim: int, image_size: int):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"face_cnn needs image_size divisible by 8, got {image_size}")
        self.stem = nn.Sequential(conv_bn(3, WIDTHS[0]), nn.ReLU())
        cins = (WIDTHS[0],) + WIDTHS[:-1]
        self.stages = nn.Sequential(*(ResBlock(cin, cout, 2) for cin, cout in zip(cins, WIDTHS, strict=True)))
        self.proj = nn.Linear(WIDTHS[-1], dim)
        self.pos = nn.Parameter(0.02 * torch.randn((image_size // 8) ** 2, dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        fmap = self.stages(self.stem(batch["face"]))  # (B, C, H/8, W/8)
        x = self.proj(rearrange(fmap, "b c h w -> b (h w) c")) + self.pos  # (B, N, D)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, N)
        return summarised(x, mask, x.mean(1))
