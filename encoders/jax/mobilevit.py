"""MobileViT (v1) face backbones from timm: XXS, XS and S (Mehta & Rastegari 2022).

The backbone reproduces timm's ByobNet for its mobilevit_* configs with timm's parameter names (stem,
stages.S.B.{conv1_1x1, conv2_kxk, conv3_1x1} for inverted residuals, stages.S.1.{conv_kxk, conv_1x1,
transformer.N, norm, conv_proj, conv_fusion} for MobileViT blocks, final_conv; each ConvNormAct as conv, bn),
so timm's published files load into it through encoders/jax/convert.py. Channels last, flax's layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import BatchNorm, LayerNorm, Linear
from encoders.jax.vit import Block

# timm's model and its architecture numbers (timm/models/mobilevit.py): stem channels, inverted-residual expansion,
# final 1x1 conv channels, and per stage (blocks, channels, stride, transformer width, transformer blocks), where a
# stage with a transformer width ends with a MobileViT block after its inverted residuals.
VARIANTS = {
    "mobilevit_xxs": dict(
        timm="mobilevit_xxs", stem=16, expansion=2.0, features=320,
        stages=((1, 16, 1, 0, 0), (3, 24, 2, 0, 0), (1, 48, 2, 64, 2), (1, 64, 2, 80, 4), (1, 80, 2, 96, 3)),
    ),
    "mobilevit_xs": dict(
        timm="mobilevit_xs", stem=16, expansion=4.0, features=384,
        stages=((1, 32, 1, 0, 0), (3, 48, 2, 0, 0), (1, 64, 2, 96, 2), (1, 80, 2, 120, 4), (1, 96, 2, 144, 3)),
    ),
    "mobilevit_s": dict(
        timm="mobilevit_s", stem=16, expansion=4.0, features=640,
        stages=((1, 32, 1, 0, 0), (3, 64, 2, 0, 0), (1, 96, 2, 144, 2), (1, 128, 2, 192, 4), (1, 160, 2, 240, 3)),
    ),
}  # fmt: skip
PATCH = 2  # MobileViT blocks attend across 2 x 2 patches
HEADS, MLP_RATIO, EPS = 4, 2.0, 1e-5  # their transformer: timm's Block with SiLU and torch's LayerNorm eps
INIT_STD = 0.01  # ByobNet's initialisation of Linear weights (timm byobnet._init_weights)


def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *, rngs: nnx.Rngs) -> nnx.Conv:
    """torch.nn.Conv2d(bias=False, padding=kernel // 2, groups=groups) on (B, H, W, C), initialised as ByobNet
    initialises its convolutions: N(0, 2 / fan_out) with fan_out = kernel * kernel * cout / groups (He et al. 2015)."""
    std = (2 / (kernel * kernel * cout // groups)) ** 0.5
    return nnx.Conv(
        cin, cout, (kernel, kernel), strides=(stride, stride), padding=((kernel // 2, kernel // 2),) * 2,
        feature_group_count=groups, use_bias=False, kernel_init=nnx.initializers.normal(std), rngs=rngs,
    )  # fmt: skip


class ConvNormAct(nnx.Module):
    """timm's ConvNormAct: conv (no bias, padding k // 2, optional channel groups), BatchNorm, then SiLU or not."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True, *,
                 rngs: nnx.Rngs):  # fmt: skip
        self.conv = conv(cin, cout, kernel, stride, groups, rngs=rngs)
        self.bn = BatchNorm(cout, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, Cin) -> (B, H / stride, W / stride, Cout) (sides rounded up)."""
        x = self.bn(self.conv(x))
        return jax.nn.silu(x) if self.act else x


class BottleneckBlock(nnx.Module):
    """MobileNetV2's inverted residual (Sandler et al. 2018) as timm's bottleneck: 1x1 expand, depthwise kxk
    (the stride), 1x1 linear projection; the input is added where the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: float, *, rngs: nnx.Rngs):
        mid = int(cin * expansion)  # timm rounds to a multiple of 8: every mid here already is one
        self.residual = stride == 1 and cin == cout
        self.conv1_1x1 = ConvNormAct(cin, mid, 1, rngs=rngs)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups=mid, rngs=rngs)
        self.conv3_1x1 = ConvNormAct(mid, cout, 1, act=False, rngs=rngs)
        if self.residual:  # the block starts as the identity (timm's zero_init_last; Goyal et al. 2017)
            self.conv3_1x1.bn.scale[...] = jnp.zeros(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, Cin) -> (B, H / stride, W / stride, Cout)."""
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + y if self.residual else y


class MobileVitBlock(nnx.Module):
    """Local kxk conv and 1x1 to the transformer width; each of the 4 pixel positions of the 2 x 2 patches is a
    sequence over the patches, through transformer blocks and a norm; folded back, 1x1 to the channels, and fused
    with the input by a kxk conv over both."""

    def __init__(self, channels: int, width: int, depth: int, *, rngs: nnx.Rngs):
        self.conv_kxk = ConvNormAct(channels, channels, 3, rngs=rngs)
        self.conv_1x1 = conv(channels, width, 1, rngs=rngs)
        self.transformer = nnx.Sequential(
            *(Block(width, HEADS, MLP_RATIO, jax.nn.silu, EPS, INIT_STD, rngs=rngs) for _ in range(depth))
        )
        self.norm = LayerNorm(width, eps=EPS, rngs=rngs)
        self.conv_proj = ConvNormAct(width, channels, 1, rngs=rngs)
        self.conv_fusion = ConvNormAct(2 * channels, channels, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, C) -> (B, H, W, C)."""
        y = self.conv_1x1(self.conv_kxk(x))  # (B, H, W, T)
        B, H, W, T = y.shape
        h, w = -(-H // PATCH) * PATCH, -(-W // PATCH) * PATCH  # rounded up to whole patches
        if (h, w) != (H, W):  # torch's bilinear, align_corners=False
            y = jax.image.resize(y, (B, h, w, T), "linear", antialias=False)
        y = rearrange(y, "b (nh ph) (nw pw) t -> (b ph pw) (nh nw) t", ph=PATCH, pw=PATCH)  # (B * 4, N, T)
        y = self.norm(self.transformer(y))
        y = rearrange(y, "(b ph pw) (nh nw) t -> b (nh ph) (nw pw) t", ph=PATCH, pw=PATCH, nh=h // PATCH)
        if (h, w) != (H, W):
            y = jax.image.resize(y, (B, H, W, T), "linear", antialias=False)
        return self.conv_fusion(jnp.concatenate([x, self.conv_proj(y)], -1))  # (B, H, W, C)


class ByobNet(nnx.Module):
    """timm's ByobNet for MobileViT without its head: 3x3 stride-2 stem, five stages, 1x1 final_conv."""

    def __init__(self, stem: int, expansion: float, features: int, stages: tuple, *, rngs: nnx.Rngs):
        self.stem = ConvNormAct(3, stem, 3, 2, rngs=rngs)
        built, cin = [], stem
        for blocks, cout, stride, width, depth in stages:
            stage = [BottleneckBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, expansion, rngs=rngs)
                     for i in range(blocks)]  # fmt: skip
            if width:
                stage.append(MobileVitBlock(cout, width, depth, rngs=rngs))
            built.append(nnx.Sequential(*stage))
            cin = cout
        self.stages = nnx.Sequential(*built)
        self.final_conv = ConvNormAct(cin, features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> (B, H/32, W/32, F) (sides rounded up)."""
        return self.final_conv(self.stages(self.stem(x)))


class Mobilevit(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim) (sides rounded up); pooled = their mean.

    timm's MobileViT on the face as it is (cvnets trained on [0, 1] pixels without mean/std normalisation: timm's
    pretrained_cfg has mean 0, std 1). tokens are the positions of the last feature map (after final_conv)
    projected to dim; pooled is timm's pooled output (the global average) projected alike. Any image_size works:
    a MobileViT block resizes a map with an odd side to the next multiple of its 2 x 2 patches and back.
    """

    def __init__(self, variant: str, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"mobilevit: unknown variant {variant!r}, expected one of {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        self.backbone = ByobNet(v["stem"], v["expansion"], v["features"], v["stages"], rngs=rngs)
        self.proj = Linear(v["features"], dim, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        fmap = self.backbone(rearrange(batch["face"], "b c h w -> b h w c"))  # (B, H/32, W/32, F)
        pooled = self.proj(fmap.mean((1, 2)))  # (B, D)
        tokens = self.proj(rearrange(fmap, "b h w c -> b (h w) c"))  # (B, N, D)
        mask = jnp.ones(tokens.shape[:2], dtype=bool)  # (B, N)
        return summarised(tokens, mask, pooled)
