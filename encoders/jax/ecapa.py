"""ECAPA-TDNN (Desplanques et al. 2020, "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation
in TDNN Based Speaker Verification") as WeSpeaker builds it: ECAPA_TDNN_GLOB_c512 / c1024 with attentive
statistics pooling (ASTP, global context) and a 192-d embedding (wespeaker/models/ecapa_tdnn.py, pooling_layers.py).

`self.backbone` has WeSpeaker's parameter names (layer1..layer4, conv, pool.linear1/2, bn, linear), so the
speaker-model part of WeSpeaker's published avg_model.pt loads through encoders/jax/convert.py
(encoders/checkpoints/ecapa.py drops its training classifier `projection.*` and maps SpeechBrain's ECAPA_TDNN
onto these names).

Padded frames are set to 0 before every convolution that looks across time (the 'same' convolutions then see the
zeros an utterance alone is padded with), and the squeeze-excite means and the pooling statistics use only valid
frames, so in eval mode the valid outputs do not depend on how much padding follows the voice and equal
WeSpeaker's on the utterance alone. (In training, BatchNorm's batch statistics include padded frames.)

Channels last, flax's layout for convolutions: features are (B, T, C) where the torch twin has (B, C, T).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.frontend import make_frontend
from encoders.jax.layers import BatchNorm, Conv1d, Linear

# variant -> (channels C of layer1..layer4, channels of the multi-layer feature aggregation). WeSpeaker fixes the
# aggregation at 1536 for both sizes; ecapa_test is a test size only.
VARIANTS = {"ecapa_c512": (512, 1536), "ecapa_c1024": (1024, 1536), "ecapa_test": (64, 192)}
SCALE = 8  # Res2Net scale
DILATIONS = (2, 3, 4)  # layer2..layer4
BOTTLENECK = 128  # of the squeeze-excitation and of the attention in the pooling
VAR_EPS = 1e-7  # WeSpeaker's floor under the variances of the pooling


def zero_padding(x: jax.Array, keep: jax.Array) -> jax.Array:
    """x (B, T, C) with frames where keep (B, T, 1) is False set to 0."""
    return jnp.where(keep, x, 0.0)


class ConvReluBn(nnx.Module):
    """A 'same'-length 1-D conv, ReLU, BatchNorm (WeSpeaker's Conv1dReluBn)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1, *, rngs: nnx.Rngs):
        self.conv = Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, rngs=rngs)
        self.bn = BatchNorm(cout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, T, Cin) -> (B, T, Cout)."""
        return self.bn(jax.nn.relu(self.conv(x)))


class Res2ConvReluBn(nnx.Module):
    """Res2Net (Gao et al. 2019) over SCALE channel groups x_1..x_s: y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1})
    for i < s, and the last group passes through: [y_1, ..., y_{s-1}, x_s] (WeSpeaker's order)."""

    def __init__(self, channels: int, dilation: int, *, rngs: nnx.Rngs):
        width = channels // SCALE
        self.convs = nnx.List(
            [Conv1d(width, width, 3, padding=dilation, dilation=dilation, rngs=rngs) for _ in range(SCALE - 1)]
        )
        self.bns = nnx.List([BatchNorm(width, rngs=rngs) for _ in range(SCALE - 1)])

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), zero at padded frames; keep (B, T, 1) -> (B, T, C), zero at padded frames."""
        groups = jnp.split(x, SCALE, -1)  # SCALE x (B, T, C/SCALE)
        ys = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            inp = groups[i] if i == 0 else groups[i] + ys[-1]
            ys.append(zero_padding(bn(jax.nn.relu(conv(inp))), keep))
        return jnp.concatenate([*ys, groups[-1]], -1)


class SEConnect(nnx.Module):
    """Squeeze-excitation (Hu et al. 2018): scale channels by sigmoid(W2 relu(W1 mean_t(x))), mean over valid frames."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.linear1 = Linear(channels, BOTTLENECK, rngs=rngs)
        self.linear2 = Linear(BOTTLENECK, channels, rngs=rngs)

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), keep (B, T, 1) -> (B, T, C)."""
        mean = zero_padding(x, keep).sum(1) / jnp.maximum(keep.sum(1), 1)  # (B, C)
        return x * jax.nn.sigmoid(self.linear2(jax.nn.relu(self.linear1(mean))))[:, None]


class SERes2Block(nnx.Module):
    """x + SE(conv1x1(Res2(conv1x1(x)))), each conv with ReLU and BatchNorm (WeSpeaker's SE_Res2Block)."""

    def __init__(self, channels: int, dilation: int, *, rngs: nnx.Rngs):
        self.se_res2block = nnx.List(
            [
                ConvReluBn(channels, channels, rngs=rngs),
                Res2ConvReluBn(channels, dilation, rngs=rngs),
                ConvReluBn(channels, channels, rngs=rngs),
                SEConnect(channels, rngs=rngs),
            ]
        )

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), keep (B, T, 1) -> (B, T, C)."""
        conv1, res2, conv2, se = self.se_res2block
        h = conv2(res2(zero_padding(conv1(x), keep), keep))
        return x + se(h, keep)


def weighted_stats(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and standard deviation over time of x (B, T, C) with weights w (summing to 1 or 0)."""
    mean = (w * x).sum(1)  # (B, C)
    var = (w * x * x).sum(1) - mean * mean
    return mean, jnp.sqrt(jnp.maximum(var, VAR_EPS))


class ASTP(nnx.Module):
    """Attentive statistics pooling with global context (Okabe et al. 2018; ECAPA's variant, WeSpeaker's ASTP).

    e_t = V tanh(W [h_t; mean; std] + b) + k per channel (1x1 convs linear1 = W, b and linear2 = V, k), where
    mean and std (unbiased, + 1e-7 under the root, as torch.var) are over the valid frames; alpha = softmax_t(e)
    over the valid frames; output [sum_t alpha_t h_t; sqrt(sum_t alpha_t h_t^2 - mean_alpha^2)] (B, 2C).
    """

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.linear1 = Conv1d(3 * channels, BOTTLENECK, 1, rngs=rngs)
        self.linear2 = Conv1d(BOTTLENECK, channels, 1, rngs=rngs)

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), keep (B, T, 1) -> (B, 2C) float32."""
        x = zero_padding(x.astype(jnp.float32), keep)  # statistics in float32: E[x^2] - E[x]^2 cancels badly in bf16
        n = keep.sum(1, keepdims=True)  # (B, 1, 1)
        mean = x.sum(1, keepdims=True) / jnp.maximum(n, 1)  # (B, 1, C)
        var = zero_padding((x - mean) ** 2, keep).sum(1, keepdims=True) / jnp.maximum(n - 1, 1)
        std = jnp.sqrt(var + VAR_EPS)
        context = jnp.concatenate([x, jnp.broadcast_to(mean, x.shape), jnp.broadcast_to(std, x.shape)], -1)
        logits = self.linear2(jnp.tanh(self.linear1(context))).astype(jnp.float32)  # (B, T, C)
        logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
        # A sample with no valid frame gets all-zero weights (and zero statistics) instead of NaN.
        alpha = jnp.where(keep, jax.nn.softmax(logits, 1), 0.0)  # (B, T, C)
        return jnp.concatenate(weighted_stats(x, alpha), -1)


class EcapaTdnn(nnx.Module):
    """WeSpeaker's ECAPA_TDNN: features (B, T, F) -> aggregated frame features (B, T, 1536), embedding (B, E).

    A k=5 conv, three SE-Res2 blocks (dilations 2, 3, 4), a 1x1 conv over their concatenated outputs (multi-layer
    feature aggregation) and ReLU, ASTP, BatchNorm, a linear layer to the embedding."""

    def __init__(self, channels: int, aggregation: int, feat_dim: int, embed_dim: int, *, rngs: nnx.Rngs):
        self.layer1 = ConvReluBn(feat_dim, channels, 5, rngs=rngs)
        self.layer2 = SERes2Block(channels, DILATIONS[0], rngs=rngs)
        self.layer3 = SERes2Block(channels, DILATIONS[1], rngs=rngs)
        self.layer4 = SERes2Block(channels, DILATIONS[2], rngs=rngs)
        self.conv = Conv1d(3 * channels, aggregation, 1, rngs=rngs)
        self.pool = ASTP(aggregation, rngs=rngs)
        self.bn = BatchNorm(2 * aggregation, rngs=rngs)
        self.linear = Linear(2 * aggregation, embed_dim, rngs=rngs)

    def __call__(self, feats: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
        """feats (B, T, F), zero at padded frames; keep (B, T, 1) -> frames (B, T, 1536), embedding (B, E)."""
        out2 = self.layer2(self.layer1(feats), keep)  # (B, T, C)
        out3 = self.layer3(out2, keep)
        out4 = self.layer4(out3, keep)
        frames = jax.nn.relu(self.conv(jnp.concatenate([out2, out3, out4], -1)))  # (B, T, 1536)
        return frames, self.linear(self.bn(self.pool(frames, keep)))


class Ecapa(nnx.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T, dim): WeSpeaker's embedding + 10 ms frames.

    The front end ("fbank80" for WeSpeaker's published models), the ECAPA-TDNN backbone; tokens are its aggregated
    frame features (what the pooling sees) projected to dim by a linear layer of this project; pooled is the
    backbone's embedding (dim = 192 loads the published files).
    """

    def __init__(self, variant: str, dim: int, sample_rate: int, frontend: str, spec_augment: bool, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"unknown ecapa variant {variant!r}: expected one of {sorted(VARIANTS)}")
        channels, aggregation = VARIANTS[variant]
        self.frontend = make_frontend(frontend, sample_rate, spec_augment, rngs=rngs)
        self.backbone = EcapaTdnn(channels, aggregation, self.frontend.bins, dim, rngs=rngs)
        self.tokens = Linear(aggregation, dim, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, F, T), (B, T)
        frames, pooled = self.backbone(rearrange(feats, "b f t -> b t f"), mask[:, :, None])  # (B, T, 1536), (B, D)
        tokens = self.tokens(frames)  # (B, T, D)
        return summarised(tokens, mask, pooled)
