"""WeSpeaker's ResNet34 speaker encoder (wespeaker/models/resnet.py; He et al. 2016 "Deep Residual Learning for
Image Recognition", adapted to speech: 3x3 stem, 32 base channels, no max pooling, temporal statistics pooling).

2-D convolutions run over (frequency, time) of 80-bin fbank features: (B, 1, 80, T) -> (B, 256, 10, T/8). TSTP
pools the last feature map by its mean and standard deviation over time per (channel, frequency), and seg_1 maps
them to the embedding (ResNet34-TSTP-emb256). `self.backbone` has WeSpeaker's parameter names (conv1, bn1,
layer1.0.conv1, ..., seg_1), so the speaker-model part of WeSpeaker's avg_model.pt loads as it is
(encoders/checkpoints/resnet_speaker.py drops its training classifier `projection.*`).

Masking over time: frames past voice_len are set to 0 before every convolution (the frame mask is downsampled
with each stride-2 conv: output frame t is valid when input frame 2t is), so the 2-D convs see zeros past the end
of an utterance, as WeSpeaker's 'same' zero padding does on the utterance alone, and TSTP uses only valid frames:
in eval mode the valid outputs do not depend on the padding. (In training, BatchNorm's batch statistics include
padded frames. With one valid frame the std is sqrt(1e-7), where torch.var would give NaN.)
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import summarised
from encoders.torch.frontend import make_frontend

# variant -> (base channels m, blocks per stage). resnet_speaker_test is a test size only.
VARIANTS = {"resnet34_speaker": (32, (3, 4, 6, 3)), "resnet_speaker_test": (8, (1, 1, 1, 1))}
VAR_EPS = 1e-7  # WeSpeaker's TSTP: sqrt(var + 1e-7)


def zero_padding(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (B, C, F, T) with frames where keep (B, 1, 1, T) is False set to 0."""
    return torch.where(keep, x, 0.0)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a 1x1 conv + BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, Cin, F, T), keep (B, 1, 1, T) -> (B, Cout, F/s, T/s) and its keep (B, 1, 1, T/s)."""
        x = zero_padding(x, keep)
        keep = keep[..., :: self.stride]  # output frame t covers input frames s*t - 1 .. s*t + 1
        out = zero_padding(torch.relu(self.bn1(self.conv1(x))), keep)
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x)), keep


def stage(cin: int, cout: int, blocks: int, stride: int) -> nn.ModuleList:
    """`blocks` basic blocks, the first with `stride` (WeSpeaker's ResNet._make_layer)."""
    return nn.ModuleList(BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks))


def temporal_stats(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """TSTP: mean and std (unbiased, + 1e-7 under the root) over the valid frames of x (B, C, F, T) -> (B, 2CF)."""
    x = zero_padding(x.float(), keep)  # in float32: the variance cancels badly in bf16
    n = keep.sum(-1, keepdim=True)  # (B, 1, 1, 1)
    mean = x.sum(-1, keepdim=True) / n.clamp_min(1)  # (B, C, F, 1)
    var = zero_padding((x - mean) ** 2, keep).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
    std = (var + VAR_EPS).sqrt()
    return torch.cat([rearrange(mean, "b c f 1 -> b (c f)"), rearrange(std, "b c f 1 -> b (c f)")], 1)


class ResNet(nn.Module):
    """WeSpeaker's ResNet: features (B, F, T) -> last feature map (B, 8m, F/8, T/8), its keep, embedding (B, E)."""

    def __init__(self, channels: int, blocks: tuple[int, ...], feat_dim: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        m = channels
        self.layer1 = stage(m, m, blocks[0], 1)
        self.layer2 = stage(m, 2 * m, blocks[1], 2)
        self.layer3 = stage(2 * m, 4 * m, blocks[2], 2)
        self.layer4 = stage(4 * m, 8 * m, blocks[3], 2)
        self.seg_1 = nn.Linear(2 * 8 * m * (feat_dim // 8), embed_dim)  # TSTP: mean and std per (C, F)

    def forward(self, feats: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """feats (B, F, T), zero at padded frames; keep (B, 1, 1, T) -> (B, 8m, F/8, T/8), (B, 1, 1, T/8), (B, E)."""
        x = torch.relu(self.bn1(self.conv1(feats[:, None])))  # (B, m, F, T)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x, keep = block(x, keep)
        return x, keep, self.seg_1(temporal_stats(x, keep))


class ResnetSpeaker(nn.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T/8, dim): WeSpeaker's embedding + 80 ms frames.

    The front end ("fbank80" for WeSpeaker's published models), the ResNet backbone; tokens are the time frames of
    its last feature map (channels x frequency per frame) projected to dim by a linear layer of this project;
    pooled is the backbone's embedding seg_1 (dim = 256 loads the published file).
    """

    def __init__(self, variant: str, dim: int, sample_rate: int, frontend: str, spec_augment: bool):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown resnet_speaker variant {variant!r}: expected one of {sorted(VARIANTS)}")
        channels, blocks = VARIANTS[variant]
        self.frontend = make_frontend(frontend, sample_rate, spec_augment)
        self.backbone = ResNet(channels, blocks, self.frontend.bins, dim)
        self.tokens = nn.Linear(8 * channels * (self.frontend.bins // 8), dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, F, T), (B, T)
        fmap, keep, pooled = self.backbone(feats, mask[:, None, None, :])  # (B, C, F/8, T/8), (B, 1, 1, T/8), (B, D)
        tokens = self.tokens(rearrange(fmap, "b c f t -> b t (c f)"))  # (B, T/8, D)
        return summarised(tokens, keep[:, 0, 0], pooled)
