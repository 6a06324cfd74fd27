"""Early (token-level) fusion: one shared transformer over the tokens of every modality."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import Block
from fusion.torch.blocks import OneStream


class Early(OneStream):
    """A CLS token and all modality tokens (each plus a learned modality embedding) go through one
    pre-norm transformer; the fused embedding is the final CLS. Every token can attend to every other
    modality's tokens from the first layer on, which is what early fusion means."""

    def __init__(self, dim: int, modalities: Sequence[str], layers: int, heads: int, dropout: float):
        super().__init__()
        self.modalities = tuple(sorted(modalities))
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.modality_emb = nn.Parameter(0.02 * torch.randn(len(self.modalities), dim))  # (M, D)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, null_key=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, outputs: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> {"fused": (B, D)}. Tokens of a missing modality are never attended to."""
        B = present[self.modalities[0]].shape[0]
        tokens = [self.cls.expand(B, -1, -1)]
        keep = [present[self.modalities[0]].new_ones(B, 1)]
        for i, m in enumerate(self.modalities):
            tokens.append(outputs[m].tokens + self.modality_emb[i])  # (B, N_m, D)
            keep.append(outputs[m].mask & present[m][:, None])  # (B, N_m)
        x = torch.cat(tokens, 1)  # (B, 1 + sum N_m, D)
        keep = torch.cat(keep, 1)  # (B, 1 + sum N_m)
        for block in self.blocks:
            x = block(x, keep)
        return {"fused": self.norm(x[:, 0])}  # (B, D)
