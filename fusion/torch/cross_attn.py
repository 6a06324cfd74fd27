"""Intermediate fusion: one stream per modality, exchanging information by cross-attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import Attention, Block, masked_mean
from fusion.torch.blocks import OneStream


class CrossLayer(nn.Module):
    """One modality's layer: x + CrossAttn(LN(x), LN(others)), then a pre-norm self-attention block."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads, null_key=True)
        self.drop = nn.Dropout(dropout)
        self.block = Block(dim, heads, dropout, null_key=True)

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor, others: torch.Tensor, others_keep: torch.Tensor
    ) -> torch.Tensor:
        """x (B, N, D) with keep (B, N); others (B, K, D) with others_keep (B, K) -> (B, N, D)."""
        x = x + self.drop(self.cross(self.norm_q(x), self.norm_kv(others), others_keep))
        return self.block(x, keep)


class CrossAttn(OneStream):
    """Each modality keeps its own token stream (own weights). In every layer, each stream's tokens
    query the tokens of all other present modalities (cross-attention, with the null key when none is
    present), then attend to themselves and go through an MLP. All streams read the other streams'
    state from the start of the layer, so the update is symmetric. The fused embedding is
    LN(mean over present modalities of each stream's masked-mean-pooled tokens)."""

    def __init__(self, dim: int, modalities: Sequence[str], layers: int, heads: int, dropout: float):
        super().__init__()
        self.modalities = tuple(sorted(modalities))
        self.modality_emb = nn.Parameter(0.02 * torch.randn(len(self.modalities), dim))  # (M, D)
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: CrossLayer(dim, heads, dropout) for m in self.modalities}) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, outputs: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> {"fused": (B, D)}. A missing modality's tokens are never keys, its stream never pooled."""
        mods = self.modalities
        x = {m: outputs[m].tokens + self.modality_emb[i] for i, m in enumerate(mods)}  # (B, N_m, D)
        keep = {m: outputs[m].mask & present[m][:, None] for m in mods}  # (B, N_m)
        for layer in self.layers:
            new = {}
            for m in mods:
                others = [o for o in mods if o != m]
                context = torch.cat([x[o] for o in others], 1) if others else x[m][:, :0]  # (B, K, D)
                context_keep = torch.cat([keep[o] for o in others], 1) if others else keep[m][:, :0]  # (B, K)
                new[m] = layer[m](x[m], keep[m], context, context_keep)
            x = new
        pooled = torch.stack([masked_mean(x[m], keep[m]) for m in mods], 1)  # (B, M, D)
        is_present = torch.stack([present[m] for m in mods], 1)  # (B, M)
        return {"fused": self.norm(masked_mean(pooled, is_present))}  # (B, D)
