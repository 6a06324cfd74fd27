"""Intermediate fusion through attention bottlenecks (MBT: Nagrani et al., NeurIPS 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import Block, masked_mean
from fusion.torch.blocks import OneStream


class Bottleneck(OneStream):
    """Each modality keeps its own token stream (own weights, as cross_attn). Layers before
    `fusion_from_layer` are unimodal self-attention blocks. From that layer on, stream m's block runs
    over [its tokens, the T shared bottleneck tokens z]: its tokens attend to themselves and to z, and
    the block's outputs at the bottleneck positions are m's update z_m; the next layer's z is the mean of
    z_m over the present modalities (MBT's update). Modalities exchange information only through z, so
    the cost is linear in the number of modalities and the width of the channel is T tokens.

    z written in layer l is read in layer l + 1, so information crosses modalities only when at least two
    layers fuse: fusion_from_layer = layers (and layers - 1) means no exchange between the streams, as in
    MBT; the readout below still sees them together (it is not late fusion).

    The fused embedding is LN(mean over present modalities of each stream's masked-mean-pooled tokens),
    MBT's readout (the per-modality outputs averaged) rather than the bottleneck mean: it is defined for
    every fusion_from_layer, including the no-fusion baseline, where z would be a constant."""

    def __init__(
        self,
        dim: int,
        modalities: Sequence[str],
        layers: int,
        heads: int,
        dropout: float,
        bottleneck_tokens: int,
        fusion_from_layer: int,
    ):
        super().__init__()
        if bottleneck_tokens < 1 or not 0 <= fusion_from_layer <= layers:
            raise ValueError(
                f"bottleneck fusion: need bottleneck_tokens >= 1 and 0 <= fusion_from_layer <= layers ({layers}), "
                f"got {bottleneck_tokens} and {fusion_from_layer}"
            )
        self.modalities = tuple(sorted(modalities))
        self.fusion_from_layer = fusion_from_layer
        self.modality_emb = nn.Parameter(0.02 * torch.randn(len(self.modalities), dim))  # (M, D)
        self.bottleneck = nn.Parameter(0.02 * torch.randn(1, bottleneck_tokens, dim))  # (1, T, D)
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: Block(dim, heads, dropout, null_key=True) for m in self.modalities})
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def stream_states(self, outputs: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """-> (B, M, D): each modality's stream, masked-mean pooled, in sorted modality order."""
        mods = self.modalities
        x = {m: outputs[m].tokens + self.modality_emb[i] for i, m in enumerate(mods)}  # (B, N_m, D)
        keep = {m: outputs[m].mask & present[m][:, None] for m in mods}  # (B, N_m)
        is_present = torch.stack([present[m] for m in mods], 1)  # (B, M)
        z = self.bottleneck.expand(is_present.shape[0], -1, -1)  # (B, T, D)
        z_keep = is_present.new_ones(z.shape[:2])  # (B, T)
        for i, layer in enumerate(self.layers):
            if i < self.fusion_from_layer:
                x = {m: layer[m](x[m], keep[m]) for m in mods}
                continue
            updates = []
            for m in mods:
                n = x[m].shape[1]
                y = layer[m](torch.cat([x[m], z], 1), torch.cat([keep[m], z_keep], 1))  # (B, N_m + T, D)
                x[m] = y[:, :n]
                updates.append(y[:, n:])  # (B, T, D)
            z_m = torch.stack(updates, 1)  # (B, M, T, D)
            count = is_present.sum(1).clamp_min(1)[:, None, None]  # (B, 1, 1)
            z = torch.where(is_present[..., None, None], z_m, 0.0).sum(1) / count  # (B, T, D)
        return torch.stack([masked_mean(x[m], keep[m]) for m in mods], 1)  # (B, M, D)

    def forward(self, outputs: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> {"fused": (B, D)}. A missing modality's tokens are never keys, its update of z is left out of
        the mean and its stream never pooled."""
        pooled = self.stream_states(outputs, present)  # (B, M, D)
        is_present = torch.stack([present[m] for m in self.modalities], 1)  # (B, M)
        return {"fused": self.norm(masked_mean(pooled, is_present))}  # (B, D)
