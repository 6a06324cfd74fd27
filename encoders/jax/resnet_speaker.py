"""WeSpeaker's ResNet34 speaker encoder (wespeaker/models/resnet.py; He et al. 2016 "Deep Residual Learning for
Image Recognition", adapted to speech: 3x3 stem, 32 base channels, no max pooling, temporal statistics pooling).

2-D convolutions run over (frequency, time) of 80-bin fbank features: (B, 80, T, 1) -> (B, 10, T/8, 256). TSTP
pools the last feature map by its mean and standard deviation over time per (channel, frequency), and seg_1 maps
them to the embedding (ResNet34-TSTP-emb256). `self.backbone` has WeSpeaker's parameter names (conv1, bn1,
layer1.0.conv1, ..., seg_1), so the speaker-model part of WeSpeaker's avg_model.pt loads through
encoders/jax/convert.py (encoders/checkpoints/resnet_speaker.py drops its training classifier `projection.*`).

Masking over time: frames past voice_len are set to 0 before every convolution (the frame mask is downsampled
with each stride-2 conv: output frame t is valid when input frame 2t is), so the 2-D convs see zeros past the end
of an utterance, as WeSpeaker's 'same' zero padding does on the utterance alone, and TSTP uses only valid frames:
in eval mode the valid outputs do not depend on the padding. (In training, BatchNorm's batch statistics include
padded frames. With one valid frame the std is sqrt(1e-7), where torch.var would give NaN.)

Channels last, flax's layout for convolutions: feature maps are (B, F, T, C) where the torch twin has (B, C, F, T).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.frontend import make_frontend
from encoders.jax.layers import BatchNorm, Conv2d, Linear

# variant -> (base channels m, blocks per stage). resnet_speaker_test is a test size only.
VARIANTS = {"resnet34_speaker": (32, (3, 4, 6, 3)), "resnet_speaker_test": (8, (1, 1, 1, 1))}
VAR_EPS = 1e-7  # WeSpeaker's TSTP: sqrt(var + 1e-7)


def zero_padding(x: jax.Array, keep: jax.Array) -> jax.Array:
    """x (B, F, T, C) with frames where keep (B, 1, T, 1) is False set to 0."""
    return jnp.where(keep, x, 0.0)


class BasicBlock(nnx.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a 1x1 conv + BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.stride = stride
        self.conv1 = Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, rngs=rngs)
        self.bn1 = BatchNorm(cout, rngs=rngs)
        self.conv2 = Conv2d(cout, cout, 3, stride=1, padding=1, bias=False, rngs=rngs)
        self.bn2 = BatchNorm(cout, rngs=rngs)
        self.shortcut = nnx.Sequential()
        if stride != 1 or cin != cout:
            conv = Conv2d(cin, cout, 1, stride=stride, bias=False, rngs=rngs)
            self.shortcut = nnx.Sequential(conv, BatchNorm(cout, rngs=rngs))

    def __call__(self, x: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x (B, F, T, Cin), keep (B, 1, T, 1) -> (B, F/s, T/s, Cout) and its keep (B, 1, T/s, 1)."""
        x = zero_padding(x, keep)
        keep = keep[:, :, :: self.stride]  # output frame t covers input frames s*t - 1 .. s*t + 1
        out = zero_padding(jax.nn.relu(self.bn1(self.conv1(x))), keep)
        return jax.nn.relu(self.bn2(self.conv2(out)) + self.shortcut(x)), keep


def stage(cin: int, cout: int, blocks: int, stride: int, *, rngs: nnx.Rngs) -> nnx.List:
    """`blocks` basic blocks, the first with `stride` (WeSpeaker's ResNet._make_layer)."""
    return nnx.List(
        [BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, rngs=rngs) for i in range(blocks)]
    )


def temporal_stats(x: jax.Array, keep: jax.Array) -> jax.Array:
    """TSTP: mean and std (unbiased, + 1e-7 under the root) over the valid frames of x (B, F, T, C) -> (B, 2CF)."""
    x = zero_padding(x.astype(jnp.float32), keep)  # in float32: the variance cancels badly in bf16
    n = keep.sum(2, keepdims=True)  # (B, 1, 1, 1)
    mean = x.sum(2, keepdims=True) / jnp.maximum(n, 1)  # (B, F, 1, C)
    var = zero_padding((x - mean) ** 2, keep).sum(2, keepdims=True) / jnp.maximum(n - 1, 1)
    std = jnp.sqrt(var + VAR_EPS)
    return jnp.concatenate([rearrange(mean, "b f 1 c -> b (c f)"), rearrange(std, "b f 1 c -> b (c f)")], 1)


class ResNet(nnx.Module):
    """WeSpeaker's ResNet: features (B, F, T) -> last feature map (B, F/8, T/8, 8m), its keep, embedding (B, E)."""

    def __init__(self, channels: int, blocks: tuple[int, ...], feat_dim: int, embed_dim: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv2d(1, channels, 3, stride=1, padding=1, bias=False, rngs=rngs)
        self.bn1 = BatchNorm(channels, rngs=rngs)
        m = channels
        self.layer1 = stage(m, m, blocks[0], 1, rngs=rngs)
        self.layer2 = stage(m, 2 * m, blocks[1], 2, rngs=rngs)
        self.layer3 = stage(2 * m, 4 * m, blocks[2], 2, rngs=rngs)
        self.layer4 = stage(4 * m, 8 * m, blocks[3], 2, rngs=rngs)
        self.seg_1 = Linear(2 * 8 * m * (feat_dim // 8), embed_dim, rngs=rngs)  # TSTP: mean and std per (C, F)

    def __call__(self, feats: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """feats (B, F, T), zero at padded frames; keep (B, 1, T, 1) -> (B, F/8, T/8, 8m), (B, 1, T/8, 1), (B, E)."""
        x = jax.nn.relu(self.bn1(self.conv1(feats[..., None])))  # (B, F, T, m)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x, keep = block(x, keep)
        return x, keep, self.seg_1(temporal_stats(x, keep))


class ResnetSpeaker(nnx.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T/8, dim): WeSpeaker's embedding + 80 ms frames.

    The front end ("fbank80" for WeSpeaker's published models), the ResNet backbone; tokens are the time frames of
    its last feature map (channels x frequency per frame) projected to dim by a linear layer of this project;
    pooled is the backbone's embedding seg_1 (dim = 256 loads the published file).
    """

    def __init__(self, variant: str, dim: int, sample_rate: int, frontend: str, spec_augment: bool, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"unknown resnet_speaker variant {variant!r}: expected one of {sorted(VARIANTS)}")
        channels, blocks = VARIANTS[variant]
        self.frontend = make_frontend(frontend, sample_rate, spec_augment, rngs=rngs)
        self.backbone = ResNet(channels, blocks, self.frontend.bins, dim, rngs=rngs)
        self.tokens = Linear(8 * channels * (self.frontend.bins // 8), dim, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, F, T), (B, T)
        fmap, keep, pooled = self.backbone(feats, mask[:, None, :, None])  # (B, F/8, T/8, C), (B, 1, T/8, 1), (B, D)
        tokens = self.tokens(rearrange(fmap, "b f t c -> b t (c f)"))  # (B, T/8, D)
        return summarised(tokens, keep[:, 0, :, 0], pooled)
