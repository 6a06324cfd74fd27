"""A small Vision Transformer face encoder (Dosovitskiy et al. 2021)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import Transformer, summarised


class FaceVit(nn.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/P)(W/P), dim) = [CLS, patches]; pooled = CLS.

    Non-overlapping P x P patches with P = min(8, image_size // 4) (at least a 4 x 4 grid), a linear
    patch embedding, learned positions, a CLS token and a pre-norm transformer. Tokens are the CLS
    output (the summary, encoders/torch/blocks.py) followed by the patch outputs.
    """

    def __init__(self, dim: int, image_size: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.patch = min(8, image_size // 4)
        if image_size % self.patch:
            raise ValueError(f"face_vit: image_size {image_size} is not a multiple of patch {self.patch}")
        n = (image_size // self.patch) ** 2
        self.embed = nn.Linear(3 * self.patch**2, dim)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, 1 + n, dim))
        self.drop = nn.Dropout(dropout)
        self.transformer = Transformer(dim, layers, heads, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        face = 2 * batch["face"] - 1  # centre [0, 1] on 0
        patches = rearrange(face, "b c (h p) (w q) -> b (h w) (p q c)", p=self.patch, q=self.patch)
        x = self.embed(patches)  # (B, N, D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], 1) + self.pos  # (B, 1+N, D)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, 1+N)
        x = self.transformer(self.drop(x), mask)
        return summarised(x[:, 1:], mask[:, 1:], x[:, 0])
