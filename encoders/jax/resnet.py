"""ResNet face encoders on ImageNet's ResNets: resnet18, resnet50 (torchvision's, He et al. 2016).

`self.backbone` is torchvision's ResNet written out in NNX under torchvision's names (conv1, bn1, layer1.0.conv1,
layer1.0.downsample.0, ...; v1.5: the stride on the bottleneck's 3x3 conv) without its ImageNet classifier `fc`,
so torchvision's published .pth files load through encoders.jax.convert once their `fc.weight` and `fc.bias`
are dropped (encoders/checkpoints/resnet.py). Initialised as torchvision does: convolutions Kaiming-normal
(fan out, ReLU gain), BatchNorm 1 and 0. Activations are channels last, (B, H, W, C).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import BatchNorm, Conv2d, Linear, MaxPool2d

# Channels of the last feature map (BasicBlock / Bottleneck x 4).
VARIANTS = {"resnet18": 512, "resnet50": 2048}
# torchvision's blocks per stage and block type.
STAGES = {"resnet18": ((2, 2, 2, 2), "basic"), "resnet50": ((3, 4, 6, 3), "bottleneck")}
# The face normalisation torchvision's ImageNet weights were trained with (RGB in [0, 1]).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def conv(cin: int, cout: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs) -> nnx.Conv:
    """kernel x kernel conv without bias, padding (kernel - 1) // 2; weights N(0, 2 / (cout k^2)) as torchvision's."""
    layer = Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False, rngs=rngs)
    std = (2.0 / (cout * kernel * kernel)) ** 0.5
    layer.kernel[...] = std * jax.random.normal(rngs.params(), layer.kernel.shape)
    return layer


def downsample(cin: int, cout: int, stride: int, *, rngs: nnx.Rngs) -> nnx.Sequential | None:
    """The 1x1 conv-BN shortcut where a block changes the shape, else None (the identity)."""
    if stride == 1 and cin == cout:
        return None
    return nnx.Sequential(conv(cin, cout, 1, stride, rngs=rngs), BatchNorm(cout, rngs=rngs))


class BasicBlock(nnx.Module):
    """relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)); the first conv strides (resnet18)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = conv(cin, width, 3, stride, rngs=rngs)
        self.bn1 = BatchNorm(width, rngs=rngs)
        self.conv2 = conv(width, width, 3, rngs=rngs)
        self.bn2 = BatchNorm(width, rngs=rngs)
        self.downsample = downsample(cin, width, stride, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x)))))
        return jax.nn.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nnx.Module):
    """relu(BN(conv1x1(relu(BN(conv3x3(relu(BN(conv1x1(x))))))) + shortcut(x)), 4 x width channels out; the 3x3
    conv strides (resnet50, torchvision's v1.5)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = conv(cin, width, 1, rngs=rngs)
        self.bn1 = BatchNorm(width, rngs=rngs)
        self.conv2 = conv(width, width, 3, stride, rngs=rngs)
        self.bn2 = BatchNorm(width, rngs=rngs)
        self.conv3 = conv(width, 4 * width, 1, rngs=rngs)
        self.bn3 = BatchNorm(4 * width, rngs=rngs)
        self.downsample = downsample(cin, 4 * width, stride, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jax.nn.relu(self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        return jax.nn.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nnx.Module):
    """torchvision's ResNet without `fc`: the stem (7x7 stride-2 conv, BN, 3x3 stride-2 max pool) and four stages
    of 64, 128, 256, 512 block widths, the first block of stages 2-4 with stride 2."""

    def __init__(self, variant: str, *, rngs: nnx.Rngs):
        blocks, kind = STAGES[variant]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = conv(3, 64, 7, 2, rngs=rngs)
        self.bn1 = BatchNorm(64, rngs=rngs)
        self.maxpool = MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stage = []
            for j in range(n):
                stage.append(block(cin, width, 2 if j == 0 and i > 0 else 1, rngs=rngs))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nnx.Sequential(*stage))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3), normalised -> (B, H/32, W/32, C): torchvision's forward up to its average pool."""
        x = self.maxpool(jax.nn.relu(self.bn1(self.conv1(x))))  # (B, H/4, W/4, 64)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Resnet(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim), all valid; pooled (B, dim).

    The ResNet's last feature map (B, C, H/32, W/32) (C = 512 or 2048) goes through one project Linear `proj`
    (C -> dim): pooled is `proj` of its global average (so it equals the mean of the tokens before `pos`), tokens
    are `proj` of each position plus a learned position embedding `pos`. `proj` and `pos` are the project's,
    initialised fresh, outside `backbone`. image_size: a multiple of 32 (the published weights were trained at
    224, but any multiple of 32 runs them).
    The face arrives in torch's layout and is moved to channels last, flax's layout for convolutions.
    """

    def __init__(self, variant: str, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"resnet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if image_size % 32:
            raise ValueError(f"resnet needs image_size divisible by 32, got {image_size}")
        self.backbone = ResNet(variant, rngs=rngs)
        self.proj = Linear(VARIANTS[variant], dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), ((image_size // 32) ** 2, dim)))

    def feature_map(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3), normalised -> (B, H/32, W/32, C): torchvision's forward up to its average pool."""
        return self.backbone(x)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = rearrange(batch["face"], "b c h w -> b h w c")  # channels last
        fmap = self.feature_map((face - jnp.array(MEAN)) / jnp.array(STD))  # (B, H/32, W/32, C)
        x = self.proj(rearrange(fmap, "b h w c -> b (h w) c"))  # (B, N, D)
        mask = jnp.ones(x.shape[:2], dtype=bool)  # (B, N)
        return summarised(x + self.pos[...], mask, self.proj(fmap.mean((1, 2))))
