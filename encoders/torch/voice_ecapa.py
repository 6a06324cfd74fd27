"""A small ECAPA-TDNN speaker encoder (Desplanques et al. 2020, "ECAPA-TDNN: Emphasized Channel
Attention, Propagation and Aggregation in TDNN Based Speaker Verification").

Padded frames are set to 0 before every convolution that looks across time, and the squeeze-excite
means and the attentive pooling use only valid frames, so in eval mode the valid outputs do not depend
on how much padding follows the voice. (In training, BatchNorm's batch statistics include padded
frames; eval uses the running statistics.)
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised
from encoders.torch.frontend import make_frontend

CHANNELS = 64  # C: width of the SE-Res2 blocks (512-1024 in the paper; small for CPU training)
SCALE = 4  # Res2Net scale: the block's 3x3 conv works on C / SCALE channel groups in a hierarchy
DILATIONS = (2, 3, 4)  # one SE-Res2 block per dilation, as in the paper
ATTENTION = 64  # bottleneck of the attentive statistics pooling (128 in the paper)


def conv_relu_bn(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """The paper's TDNN layer: a 'same'-length 1-D conv, then ReLU, then BatchNorm."""
    conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
    return nn.Sequential(conv, nn.ReLU(), nn.BatchNorm1d(cout))


def zero_padding(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (B, C, T) with frames where keep (B, 1, T) is False set to 0."""
    return torch.where(keep, x, 0.0)


def time_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, C, T) over the valid frames of keep (B, 1, T) -> (B, C)."""
    return zero_padding(x, keep).sum(-1) / keep.sum(-1).clamp_min(1)


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, plus the input (a residual).

    Res2 (Gao et al. 2019): split the channels into groups x_1..x_s; y_1 = x_1, y_2 = K_2(x_2),
    y_i = K_i(x_i + y_{i-1}), which gives the later groups growing receptive fields.
    SE (Hu et al. 2018): scale channels by sigmoid(W2 relu(W1 mean_t(h))).
    """

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        width = channels // SCALE
        self.conv1 = conv_relu_bn(channels, channels)
        self.res2 = nn.ModuleList(conv_relu_bn(width, width, 3, dilation) for _ in range(SCALE - 1))
        self.conv3 = conv_relu_bn(channels, channels)
        self.se = nn.Sequential(
            nn.Linear(channels, channels // 2), nn.ReLU(), nn.Linear(channels // 2, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), keep (B, 1, T) -> (B, C, T)."""
        groups = zero_padding(self.conv1(x), keep).chunk(SCALE, 1)  # SCALE x (B, C/SCALE, T)
        ys = [groups[0]]
        for i, conv in enumerate(self.res2):
            inp = groups[i + 1] if i == 0 else groups[i + 1] + ys[-1]
            ys.append(zero_padding(conv(inp), keep))
        h = self.conv3(torch.cat(ys, 1))  # (B, C, T)
        scale = self.se(time_mean(h, keep))  # (B, C)
        return x + h * scale[..., None]


def weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over time of x (B, C, T) with weights w (summing to 1 or 0)."""
    mean = (w * x).sum(-1)  # (B, C)
    var = (w * x * x).sum(-1) - mean * mean
    return mean, var.clamp_min(1e-5).sqrt()


class AttentiveStatsPool(nn.Module):
    """Channel- and context-dependent attentive statistics pooling (Okabe et al. 2018; ECAPA's variant).

    Each frame's attention logits see the frame and the utterance's global mean and std:
    e_t = V tanh(W [h_t; mean; std]), alpha = softmax_t(e) over valid frames, per channel;
    output [sum_t alpha_t h_t; sqrt(sum_t alpha_t h_t^2 - mean_alpha^2)] (B, 2C).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.attn = nn.Sequential(conv_relu_bn(3 * channels, ATTENTION), nn.Tanh(), nn.Conv1d(ATTENTION, channels, 1))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), keep (B, 1, T) -> (B, 2C) float32."""
        x = zero_padding(x.float(), keep)  # statistics in float32: E[x^2] - E[x]^2 cancels badly in bf16
        uniform = keep / keep.sum(-1, keepdim=True).clamp_min(1)  # (B, 1, T)
        mean, std = weighted_stats(x, uniform)  # (B, C) each
        context = torch.cat([x, mean[..., None].expand_as(x), std[..., None].expand_as(x)], 1)  # (B, 3C, T)
        logits = self.attn(context).float().masked_fill(~keep, torch.finfo(torch.float32).min)
        # A sample with no valid frame gets all-zero weights (and zero statistics) instead of NaN.
        alpha = torch.where(keep, logits.softmax(-1), 0.0)  # (B, C, T)
        return torch.cat(weighted_stats(x, alpha), 1)


class VoiceEcapa(nn.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T, dim): summary + 10 ms frames.

    The front end ("logmel40" log-mel or "fbank80" Kaldi fbank, + SpecAugment in training), a k=5 conv,
    three SE-Res2 blocks with dilations 2, 3, 4, multi-layer feature aggregation (a 1x1 conv over the
    concatenated block outputs),
    attentive statistics pooling over the valid frames, BatchNorm and a linear layer -> pooled.
    Tokens are the aggregated frame features projected to dim; the pooling runs over them.
    """

    def __init__(self, dim: int, sample_rate: int, spec_augment: bool, frontend: str = "logmel40"):
        super().__init__()
        C = CHANNELS
        self.frontend = make_frontend(frontend, sample_rate, spec_augment)
        self.stem = conv_relu_bn(self.frontend.bins, C, 5)
        self.blocks = nn.ModuleList(SERes2Block(C, d) for d in DILATIONS)
        self.mfa = conv_relu_bn(len(DILATIONS) * C, 3 * C)
        self.tokens = nn.Linear(3 * C, dim)
        self.pool = AttentiveStatsPool(dim)
        self.head = nn.Sequential(nn.BatchNorm1d(2 * dim), nn.Linear(2 * dim, dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, M, T), (B, T)
        keep = mask[:, None, :]  # (B, 1, T)
        x = zero_padding(self.stem(feats), keep)  # (B, C, T)
        outs = []
        for block in self.blocks:
            x = block(x, keep)
            outs.append(x)
        h = self.mfa(torch.cat(outs, 1))  # (B, 3C, T)
        tokens = self.tokens(rearrange(h, "b c t -> b t c"))  # (B, T, D)
        pooled = self.head(self.pool(rearrange(tokens, "b t d -> b d t"), keep))  # (B, D)
        return summarised(tokens, mask, pooled)
