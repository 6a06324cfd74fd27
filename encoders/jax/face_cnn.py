"""A small residual CNN face encoder; its tokens are the positions of the last feature map."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import BatchNorm, Conv2d, Linear

WIDTHS = (32, 64, 128)  # channels of the three residual stages; each halves the resolution


def conv_bn(cin: int, cout: int, stride: int = 1, *, rngs: nnx.Rngs) -> nnx.Sequential:
    """3x3 conv (no bias: BN has one) and BatchNorm."""
    return nnx.Sequential(
        Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, rngs=rngs), BatchNorm(cout, rngs=rngs)
    )


class ResBlock(nnx.Module):
    """ResNet basic block (He et al. 2016): relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.body = nnx.Sequential(conv_bn(cin, cout, stride, rngs=rngs), jax.nn.relu, conv_bn(cout, cout, rngs=rngs))
        # Every block here changes the shape (stride 2), so the shortcut is ResNet's 1x1 projection.
        self.shortcut = nnx.Sequential(
            Conv2d(cin, cout, 1, stride=stride, bias=False, rngs=rngs), BatchNorm(cout, rngs=rngs)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.body(x) + self.shortcut(x))


class FaceCnn(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/8)(W/8), dim), all valid; pooled = token mean.

    A conv-BN-ReLU stem, then three stride-2 residual blocks. Each position of the last feature map
    is projected to dim and gets a learned position embedding (so that fusion attention knows where
    a token sits); pooled is the mean of the projected features (global average pooling).
    The face arrives in torch's layout and is moved to channels last, flax's layout for convolutions.
    """

    def __init__(self, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if image_size % 8:
            raise ValueError(f"face_cnn needs image_size divisible by 8, got {image_size}")
        self.stem = nnx.Sequential(conv_bn(3, WIDTHS[0], rngs=rngs), jax.nn.relu)
        cins = (WIDTHS[0],) + WIDTHS[:-1]
        self.stages = nnx.Sequential(
            *(ResBlock(cin, cout, 2, rngs=rngs) for cin, cout in zip(cins, WIDTHS, strict=True))
        )
        self.proj = Linear(WIDTHS[-1], dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), ((image_size // 8) ** 2, dim)))

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = rearrange(batch["face"], "b c h w -> b h w c")  # channels last
        fmap = self.stages(self.stem(face))  # (B, H/8, W/8, C)
        x = self.proj(rearrange(fmap, "b h w c -> b (h w) c")) + self.pos[...]  # (B, N, D)
        mask = jnp.ones(x.shape[:2], dtype=bool)  # (B, N)
        return summarised(x, mask, x.mean(1))
