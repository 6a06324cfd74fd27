"""A small ECAPA-TDNN speaker encoder (Desplanques et al. 2020, "ECAPA-TDNN: Emphasized Channel
Attention, Propagation and Aggregation in TDNN Based Speaker Verification").

Padded frames are set to 0 before every convolution that looks across time, and the squeeze-excite
means and the attentive pooling use only valid frames, so in eval mode the valid outputs do not depend
on how much padding follows the voice. (In training, BatchNorm's batch statistics include padded
frames; eval uses the running statistics.)

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

CHANNELS = 64  # C: width of the SE-Res2 blocks (512-1024 in the paper; small for CPU training)
SCALE = 4  # Res2Net scale: the block's 3x3 conv works on C / SCALE channel groups in a hierarchy
DILATIONS = (2, 3, 4)  # one SE-Res2 block per dilation, as in the paper
ATTENTION = 64  # bottleneck of the attentive statistics pooling (128 in the paper)


def conv_relu_bn(cin: int, cout: int, kernel: int = 1, dilation: int = 1, *, rngs: nnx.Rngs) -> nnx.Sequential:
    """The paper's TDNN layer: a 'same'-length 1-D conv, then ReLU, then BatchNorm."""
    conv = Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2, rngs=rngs)
    return nnx.Sequential(conv, jax.nn.relu, BatchNorm(cout, rngs=rngs))


def zero_padding(x: jax.Array, keep: jax.Array) -> jax.Array:
    """x (B, T, C) with frames where keep (B, T, 1) is False set to 0."""
    return jnp.where(keep, x, 0.0)


def time_mean(x: jax.Array, keep: jax.Array) -> jax.Array:
    """Mean of x (B, T, C) over the valid frames of keep (B, T, 1) -> (B, C)."""
    return zero_padding(x, keep).sum(1) / jnp.maximum(keep.sum(1), 1)


class SERes2Block(nnx.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, plus the input (a residual).

    Res2 (Gao et al. 2019): split the channels into groups x_1..x_s; y_1 = x_1, y_2 = K_2(x_2),
    y_i = K_i(x_i + y_{i-1}), which gives the later groups growing receptive fields.
    SE (Hu et al. 2018): scale channels by sigmoid(W2 relu(W1 mean_t(h))).
    """

    def __init__(self, channels: int, dilation: int, *, rngs: nnx.Rngs):
        width = channels // SCALE
        self.conv1 = conv_relu_bn(channels, channels, rngs=rngs)
        self.res2 = nnx.List([conv_relu_bn(width, width, 3, dilation, rngs=rngs) for _ in range(SCALE - 1)])
        self.conv3 = conv_relu_bn(channels, channels, rngs=rngs)
        self.se = nnx.Sequential(
            Linear(channels, channels // 2, rngs=rngs),
            jax.nn.relu,
            Linear(channels // 2, channels, rngs=rngs),
            jax.nn.sigmoid,
        )

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), keep (B, T, 1) -> (B, T, C)."""
        groups = jnp.split(zero_padding(self.conv1(x), keep), SCALE, -1)  # SCALE x (B, T, C/SCALE)
        ys = [groups[0]]
        for i, conv in enumerate(self.res2):
            inp = groups[i + 1] if i == 0 else groups[i + 1] + ys[-1]
            ys.append(zero_padding(conv(inp), keep))
        h = self.conv3(jnp.concatenate(ys, -1))  # (B, T, C)
        scale = self.se(time_mean(h, keep))  # (B, C)
        return x + h * scale[:, None]


def weighted_stats(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and standard deviation over time of x (B, T, C) with weights w (summing to 1 or 0)."""
    mean = (w * x).sum(1)  # (B, C)
    var = (w * x * x).sum(1) - mean * mean
    return mean, jnp.sqrt(jnp.maximum(var, 1e-5))


class AttentiveStatsPool(nnx.Module):
    """Channel- and context-dependent attentive statistics pooling (Okabe et al. 2018; ECAPA's variant).

    Each frame's attention logits see the frame and the utterance's global mean and std:
    e_t = V tanh(W [h_t; mean; std]), alpha = softmax_t(e) over valid frames, per channel;
    output [sum_t alpha_t h_t; sqrt(sum_t alpha_t h_t^2 - mean_alpha^2)] (B, 2C).
    """

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.attn = nnx.Sequential(
            conv_relu_bn(3 * channels, ATTENTION, rngs=rngs), jnp.tanh, Conv1d(ATTENTION, channels, 1, rngs=rngs)
        )

    def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
        """x (B, T, C), keep (B, T, 1) -> (B, 2C) float32."""
        x = zero_padding(x.astype(jnp.float32), keep)  # statistics in float32: E[x^2] - E[x]^2 cancels badly in bf16
        uniform = keep / jnp.maximum(keep.sum(1, keepdims=True), 1)  # (B, T, 1)
        mean, std = weighted_stats(x, uniform)  # (B, C) each
        context = jnp.concatenate(
            [x, jnp.broadcast_to(mean[:, None], x.shape), jnp.broadcast_to(std[:, None], x.shape)], -1
        )  # (B, T, 3C)
        logits = jnp.where(keep, self.attn(context).astype(jnp.float32), jnp.finfo(jnp.float32).min)
        # A sample with no valid frame gets all-zero weights (and zero statistics) instead of NaN.
        alpha = jnp.where(keep, jax.nn.softmax(logits, 1), 0.0)  # (B, T, C)
        return jnp.concatenate(weighted_stats(x, alpha), -1)


class VoiceEcapa(nnx.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T, dim): summary + 10 ms frames.

    The front end ("logmel40" log-mel or "fbank80" Kaldi fbank, + SpecAugment in training), a k=5 conv,
    three SE-Res2 blocks with dilations 2, 3, 4, multi-layer feature aggregation (a 1x1 conv over the
    concatenated block outputs),
    attentive statistics pooling over the valid frames, BatchNorm and a linear layer -> pooled.
    Tokens are the aggregated frame features projected to dim; the pooling runs over them.
    """

    def __init__(self, dim: int, sample_rate: int, spec_augment: bool, frontend: str = "logmel40", *, rngs: nnx.Rngs):
        C = CHANNELS
        self.frontend = make_frontend(frontend, sample_rate, spec_augment, rngs=rngs)
        self.stem = conv_relu_bn(self.frontend.bins, C, 5, rngs=rngs)
        self.blocks = nnx.List([SERes2Block(C, d, rngs=rngs) for d in DILATIONS])
        self.mfa = conv_relu_bn(len(DILATIONS) * C, 3 * C, rngs=rngs)
        self.tokens = Linear(3 * C, dim, rngs=rngs)
        self.pool = AttentiveStatsPool(dim, rngs=rngs)
        self.head = nnx.Sequential(BatchNorm(2 * dim, rngs=rngs), Linear(2 * dim, dim, rngs=rngs))

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        feats, mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, M, T), (B, T)
        keep = mask[:, :, None]  # (B, T, 1)
        x = zero_padding(self.stem(rearrange(feats, "b m t -> b t m")), keep)  # (B, T, C)
        outs = []
        for block in self.blocks:
            x = block(x, keep)
            outs.append(x)
        h = self.mfa(jnp.concatenate(outs, -1))  # (B, T, 3C)
        tokens = self.tokens(h)  # (B, T, D)
        pooled = self.head(self.pool(tokens, keep))  # (B, D)
        return summarised(tokens, mask, pooled)
