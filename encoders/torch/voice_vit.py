"""A small transformer over log-mel spectrogram strips (in the spirit of AST, Gong et al. 2021)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import Transformer, summarised
from encoders.torch.frontend import make_frontend

STRIP = 4  # frames per token: one full-frequency strip of 40 ms


def sinusoid_positions(n: int, dim: int) -> torch.Tensor:
    """Fixed positions (n, dim) of Vaswani et al. 2017: [sin(p w_i), cos(p w_i)], w_i = 10000^(-2i/D).

    Fixed rather than learned because the number of strips depends on the voice length, which the
    encoder does not know at construction."""
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (D/2,)
    angle = torch.arange(n, dtype=torch.float32)[:, None] * freq  # (n, D/2)
    return torch.cat([angle.sin(), angle.cos()], 1)  # (n, D)


class VoiceVit(nn.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T/4, dim) = [CLS, 40 ms strips].

    The front end ("logmel40" log-mel or "fbank80" Kaldi fbank, + SpecAugment in training), non-overlapping
    strips of 4 frames x all bins,
    a linear strip embedding, sinusoidal positions, a CLS token and a pre-norm transformer whose
    attention ignores padded strips. A strip is valid when all its frames are.
    """

    def __init__(
        self,
        dim: int,
        sample_rate: int,
        layers: int,
        heads: int,
        dropout: float,
        spec_augment: bool,
        frontend: str = "logmel40",
    ):
        super().__init__()
        if dim % 2:
            raise ValueError(f"voice_vit needs an even dim for its sinusoidal positions, got {dim}")
        self.frontend = make_frontend(frontend, sample_rate, spec_augment)
        self.embed = nn.Linear(self.frontend.bins * STRIP, dim)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.drop = nn.Dropout(dropout)
        self.transformer = Transformer(dim, layers, heads, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        feats, frame_mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, M, T), (B, T)
        n = feats.shape[-1] // STRIP  # trailing frames that fill no strip are dropped
        strips = rearrange(feats[..., : n * STRIP], "b m (n s) -> b n (s m)", s=STRIP)
        x = self.embed(strips) + sinusoid_positions(n, self.cls.shape[-1]).to(feats.device)  # (B, N, D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], 1)  # (B, 1+N, D)
        mask = frame_mask.sum(1, keepdim=True) // STRIP > torch.arange(n, device=x.device)  # (B, N)
        mask = torch.cat([mask.new_ones(x.shape[0], 1), mask], 1)  # (B, 1+N): CLS is always valid
        x = self.transformer(self.drop(x), mask)
        return summarised(x[:, 1:], mask[:, 1:], x[:, 0])
