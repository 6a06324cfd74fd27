"""ECAPA-TDNN (Desplanques et al. 2020, "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation
in TDNN Based Speaker Verification") as WeSpeaker builds it: ECAPA_TDNN_GLOB_c512 / c1024 with attentive
statistics pooling (ASTP, global context) and a 192-d embedding (wespeaker/models/ecapa_tdnn.py, pooling_layers.py).

`self.backbone` has WeSpeaker's parameter names (layer1..layer4, conv, pool.linear1/2, bn, linear), so the
speaker-model part of WeSpeaker's published avg_model.pt loads as it is (encoders/checkpoints/ecapa.py drops its
training classifier `projection.*` and maps SpeechBrain's ECAPA_TDNN onto these names).

Padded frames are set to 0 before every convolution that looks across time (the 'same' convolutions then see the
zeros an utterance alone is padded with), and the squeeze-excite means and the pooling statistics use only valid
frames, so in eval mode the valid outputs do not depend on how much padding follows the voice and equal
WeSpeaker's on the utterance alone. (In training, BatchNorm's batch statistics include padded frames.)
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised
from encoders.torch.frontend import make_frontend

# variant -> (channels C of layer1..layer4, channels of the multi-layer feature aggregation). WeSpeaker fixes the
# aggregation at 1536 for both sizes; ecapa_test is a test size only.
VARIANTS = {"ecapa_c512": (512, 1536), "ecapa_c1024": (1024, 1536), "ecapa_test": (64, 192)}
SCALE = 8  # Res2Net scale
DILATIONS = (2, 3, 4)  # layer2..layer4
BOTTLENECK = 128  # of the squeeze-excitation and of the attention in the pooling
VAR_EPS = 1e-7  # WeSpeaker's floor under the variances of the pooling


def zero_padding(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (B, C, T) with frames where keep (B, 1, T) is False set to 0."""
    return torch.where(keep, x, 0.0)


class ConvReluBn(nn.Module):
    """A 'same'-length 1-D conv, ReLU, BatchNorm (WeSpeaker's Conv1dReluBn)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, Cin, T) -> (B, Cout, T)."""
        return self.bn(torch.relu(self.conv(x)))


class Res2ConvReluBn(nn.Module):
    """Res2Net (Gao et al. 2019) over SCALE channel groups x_1..x_s: y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1})
    for i < s, and the last group passes through: [y_1, ..., y_{s-1}, x_s] (WeSpeaker's order)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        width = channels // SCALE
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation) for _ in range(SCALE - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(SCALE - 1))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), zero at padded frames; keep (B, 1, T) -> (B, C, T), zero at padded frames."""
        groups = x.chunk(SCALE, 1)  # SCALE x (B, C/SCALE, T)
        ys = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            inp = groups[i] if i == 0 else groups[i] + ys[-1]
            ys.append(zero_padding(bn(torch.relu(conv(inp))), keep))
        return torch.cat([*ys, groups[-1]], 1)


class SEConnect(nn.Module):
    """Squeeze-excitation (Hu et al. 2018): scale channels by sigmoid(W2 relu(W1 mean_t(x))), mean over valid frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, BOTTLENECK)
        self.linear2 = nn.Linear(BOTTLENECK, channels)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), keep (B, 1, T) -> (B, C, T)."""
        mean = zero_padding(x, keep).sum(-1) / keep.sum(-1).clamp_min(1)  # (B, C)
        return x * torch.sigmoid(self.linear2(torch.relu(self.linear1(mean))))[..., None]


class SERes2Block(nn.Module):
    """x + SE(conv1x1(Res2(conv1x1(x)))), each conv with ReLU and BatchNorm (WeSpeaker's SE_Res2Block)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.se_res2block = nn.ModuleList(
            [
                ConvReluBn(channels, channels),
                Res2ConvReluBn(channels, dilation),
                ConvReluBn(channels, channels),
                SEConnect(channels),
            ]
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), keep (B, 1, T) -> (B, C, T)."""
        conv1, res2, conv2, se = self.se_res2block
        h = conv2(res2(zero_padding(conv1(x), keep), keep))
        return x + se(h, keep)


def weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over time of x (B, C, T) with weights w (summing to 1 or 0)."""
    mean = (w * x).sum(-1)  # (B, C)
    var = (w * x * x).sum(-1) - mean * mean
    return mean, var.clamp_min(VAR_EPS).sqrt()


class ASTP(nn.Module):
    """Attentive statistics pooling with global context (Okabe et al. 2018; ECAPA's variant, WeSpeaker's ASTP).

    e_t = V tanh(W [h_t; mean; std] + b) + k per channel (1x1 convs linear1 = W, b and linear2 = V, k), where
    mean and std (unbiased, + 1e-7 under the root, as torch.var) are over the valid frames; alpha = softmax_t(e)
    over the valid frames; output [sum_t alpha_t h_t; sqrt(sum_t alpha_t h_t^2 - mean_alpha^2)] (B, 2C).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.linear1 = nn.Conv1d(3 * channels, BOTTLENECK, 1)
        self.linear2 = nn.Conv1d(BOTTLENECK, channels, 1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), keep (B, 1, T) -> (B, 2C) float32."""
        x = zero_padding(x.float(), keep)  # statistics in float32: E[x^2] - E[x]^2 cancels badly in bf16
        n = keep.sum(-1, keepdim=True)  # (B, 1, 1)
        mean = x.sum(-1, keepdim=True) / n.clamp_min(1)  # (B, C, 1)
        var = zero_padding((x - mean) ** 2, keep).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
        context = torch.cat([x, mean.expand_as(x), (var + VAR_EPS).sqrt().expand_as(x)], 1)  # (B, 3C, T)
        logits = self.linear2(torch.tanh(self.linear1(context))).float()
        logits = logits.masked_fill(~keep, torch.finfo(torch.float32).min)
        # A sample with no valid frame gets all-zero weights (and zero statistics) instead of NaN.
        alpha = torch.where(keep, logits.softmax(-1), 0.0)  # (B, C, T)
        return torch.cat(weighted_stats(x, alpha), 1)


class EcapaTdnn(nn.Module):
    """WeSpeaker's ECAPA_TDNN: features (B, F, T) -> aggregated frame features (B, 1536, T), embedding (B, E).

    A k=5 conv, three SE-Res2 blocks (dilations 2, 3, 4), a 1x1 conv over their concatenated outputs (multi-layer
    feature aggregation) and ReLU, ASTP, BatchNorm, a linear layer to the embedding."""

    def __init__(self, channels: int, aggregation: int, feat_dim: int, embed_dim: int):
        super().__init__()
        self.layer1 = ConvReluBn(feat_dim, channels, 5)
        self.layer2 = SERes2Block(channels, DILATIONS[0])
        self.layer3 = SERes2Block(channels, DILATIONS[1])
        self.layer4 = SERes2Block(channels, DILATIONS[2])
        self.conv = nn.Conv1d(3 * channels, aggregation, 1)
        self.pool = ASTP(aggregation)
        self.bn = nn.BatchNorm1d(2 * aggregation)
        self.linear = nn.Linear(2 * aggregation, embed_dim)

    def forward(self, feats: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, F, T), zero at padded frames; keep (B, 1, T) -> frames (B, 1536, T), embedding (B, E)."""
        out2 = self.layer2(self.layer1(feats), keep)  # (B, C, T)
        out3 = self.layer3(out2, keep)
        out4 = self.layer4(out3, keep)
        frames = torch.relu(self.conv(torch.cat([out2, out3, out4], 1)))  # (B, 1536, T)
        return frames, self.linear(self.bn(self.pool(frames, keep)))


class Ecapa(nn.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T, dim): WeSpeaker's embedding + 10 ms frames.

    The front end ("fbank80" for WeSpeaker's published models), the ECAPA-TDNN backbone; tokens are its aggregated
    frame features (what the pooling sees) projected to dim by a linear layer of this project; pooled is the
    backbone's embedding (dim = 192 loads the published files).
    """

    def __init__(self, variant: str, dim: int, sample_rate: int, frontend: str, spec_augment: bool):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ecapa variant {variant!r}: expected one of {sorted(VARIANTS)}")
        channels, aggregation = VARIANTS[variant]
        self.frontend = make_frontend(frontend, sample_rate, spec_augment)
        self.backbone = EcapaTdnn(channels, aggregation, self.frontend.bins, dim)
        self.tokens = nn.Linear(aggregation, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, F, T), (B, T)
        frames, pooled = self.backbone(feats, mask[:, None, :])  # (B, 1536, T), (B, D)
        tokens = self.tokens(rearrange(frames, "b c t -> b t c"))  # (B, T, D)
        return summarised(tokens, mask, pooled)
