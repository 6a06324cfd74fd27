"""iResNet face encoders (ArcFace's backbones): iresnet18, iresnet50, iresnet100.

The improved residual network of Duta et al. 2020 ("Improved Residual Networks for Image and Video
Recognition") as insightface trains it for face recognition (Deng et al. 2019, ArcFace; insightface
recognition/arcface_torch/backbones/iresnet.py): a 3x3 conv-BN-PReLU stem at full resolution, four stages of
pre-activation blocks BN-conv-BN-PReLU-conv-BN (the second conv strides; the first block of a stage has a 1x1
conv-BN shortcut), then BN, a linear layer over the flattened last feature map, and a BatchNorm1d whose scale is
fixed at 1 (not trained: a Buffer here). `IResNet` uses insightface's parameter names, so its published
backbone.pth loads through encoders.jax.convert (encoders/checkpoints/iresnet.py); insightface's dropout before
the linear layer (p = 0 in arcface_torch's train.py) is left out. Activations are channels last, (B, H, W, C).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import BatchNorm, Buffer, Conv2d, Linear, PReLU

# Blocks per stage (Duta et al. 2020, insightface); the stages have 64, 128, 256, 512 channels.
VARIANTS = {"iresnet18": (2, 2, 2, 2), "iresnet50": (3, 4, 14, 3), "iresnet100": (3, 13, 30, 3)}
WIDTHS = (64, 128, 256, 512)
# The face normalisation insightface trains with: (x - 0.5) / 0.5 on RGB in [0, 1].
MEAN, STD = 0.5, 0.5


def conv(cin: int, cout: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs) -> nnx.Conv:
    """kernel x kernel conv without bias ("same" padding), weights N(0, 0.1) as insightface initialises them."""
    layer = Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False, rngs=rngs)
    layer.kernel[...] = 0.1 * jax.random.normal(rngs.params(), layer.kernel.shape)
    return layer


class IBasicBlock(nnx.Module):
    """x + BN(conv(PReLU(BN(conv(BN(x)))))), the second conv with the stride; no activation after the sum."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.bn1 = BatchNorm(cin, rngs=rngs)
        self.conv1 = conv(cin, cout, 3, rngs=rngs)
        self.bn2 = BatchNorm(cout, rngs=rngs)
        self.prelu = PReLU(cout, rngs=rngs)
        self.conv2 = conv(cout, cout, 3, stride, rngs=rngs)
        self.bn3 = BatchNorm(cout, rngs=rngs)
        changes_shape = stride != 1 or cin != cout
        self.downsample = (
            nnx.Sequential(conv(cin, cout, 1, stride, rngs=rngs), BatchNorm(cout, rngs=rngs)) if changes_shape else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nnx.Module):
    """face (B, H, W, 3), normalised -> the last feature map (`feature_map`) and the embedding (`embed`)."""

    def __init__(self, blocks: tuple[int, ...], dim: int, image_size: int, *, rngs: nnx.Rngs):
        self.conv1 = conv(3, WIDTHS[0], 3, rngs=rngs)
        self.bn1 = BatchNorm(WIDTHS[0], rngs=rngs)
        self.prelu = PReLU(WIDTHS[0], rngs=rngs)
        cins = (WIDTHS[0],) + WIDTHS[:-1]
        for i, (n, cin, cout) in enumerate(zip(blocks, cins, WIDTHS, strict=True)):
            stage = [IBasicBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1, rngs=rngs) for j in range(n)]
            setattr(self, f"layer{i + 1}", nnx.Sequential(*stage))
        self.bn2 = BatchNorm(WIDTHS[-1], rngs=rngs)
        self.fc = Linear(WIDTHS[-1] * (image_size // 16) ** 2, dim, rngs=rngs)
        self.features = BatchNorm(dim, rngs=rngs)
        self.features.scale = Buffer(jnp.ones(dim))  # insightface keeps this scale at 1

    def feature_map(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> (B, H/16, W/16, 512), after the final BN."""
        x = self.prelu(self.bn1(self.conv1(x)))  # (B, H, W, 64)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, H/16, W/16, 512)
        return self.bn2(x)

    def embed(self, fmap: jax.Array) -> jax.Array:
        """fmap (B, H/16, W/16, 512) -> (B, dim): flattened channel-major, as insightface's fc reads it."""
        return self.features(self.fc(rearrange(fmap, "b h w c -> b (c h w)")))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> the embedding (B, dim), insightface's output."""
        return self.embed(self.feature_map(x))


class Iresnet(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/16)(W/16), dim), all valid; pooled = the iResNet embedding.

    `variant` names the depth (VARIANTS). The published weights were trained on 112 x 112 aligned faces, a 7 x 7
    last feature map: image_size must be 112 to load them. Other multiples of 16 build (the linear layer then
    reads 512 (H/16)^2 inputs instead of 512 x 49) but only train from scratch. dim is the embedding size of the
    backbone itself (its linear layer and BatchNorm1d): 512 loads the published files.
    Tokens: each position of the last feature map (512 channels, after its BN) projected to dim by `proj`, plus a
    learned position embedding `pos` (both the project's, initialised fresh, outside `backbone`).
    The face arrives in torch's layout and is moved to channels last, flax's layout for convolutions.
    """

    def __init__(self, variant: str, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"iresnet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if image_size % 16:
            raise ValueError(f"iresnet needs image_size divisible by 16 (112 for published weights), got {image_size}")
        self.backbone = IResNet(VARIANTS[variant], dim, image_size, rngs=rngs)
        self.proj = Linear(WIDTHS[-1], dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), ((image_size // 16) ** 2, dim)))

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = rearrange(batch["face"], "b c h w -> b h w c")  # channels last
        fmap = self.backbone.feature_map((face - MEAN) / STD)  # (B, H/16, W/16, 512)
        x = self.proj(rearrange(fmap, "b h w c -> b (h w) c")) + self.pos[...]  # (B, N, D)
        mask = jnp.ones(x.shape[:2], dtype=bool)  # (B, N)
        return summarised(x, mask, self.backbone.embed(fmap))
