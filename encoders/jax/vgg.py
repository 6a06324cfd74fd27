"""VGG16 face encoder on ImageNet's VGG16 (torchvision's, Simonyan & Zisserman 2015, configuration D, no BatchNorm).

`self.backbone` is torchvision's VGG16 written out in NNX under torchvision's names (features.0, features.2, ...,
classifier.0, classifier.3) without the ImageNet classifier's last layer (classifier.6, fc8 4096 -> 1000): 13 3x3
convs with ReLU and five 2x2 max pools (`features`), an adaptive average pool to 7 x 7, then fc6 and fc7
(25088 -> 4096 -> 4096, each with ReLU and dropout 0.5), whose 4096 outputs are the embedding, as in the VGG-Face
descriptor (Parkhi et al. 2015). torchvision's published .pth files load through encoders.jax.convert once
classifier.6 is dropped (encoders/checkpoints/vgg.py). Initialised as torchvision does: convolutions
Kaiming-normal (fan out, ReLU gain), linear weights N(0, 0.01), biases 0. Activations are channels last.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import Conv2d, Dropout, Linear, MaxPool2d, adaptive_avg_pool2d

# Channels of the last feature map and width of the embedding (fc7).
VARIANTS = {"vgg16": (512, 4096)}
# torchvision's configuration D: conv widths, "M" a 2x2 max pool.
LAYERS = {"vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")}
# The face normalisation torchvision's ImageNet weights were trained with (RGB in [0, 1]).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def initialised(layer: nnx.Module, std: float, *, rngs: nnx.Rngs) -> nnx.Module:
    """layer with weights N(0, std^2) and zero biases, torchvision's VGG initialisation."""
    layer.kernel[...] = std * jax.random.normal(rngs.params(), layer.kernel.shape)
    layer.bias[...] = jnp.zeros_like(layer.bias[...])
    return layer


class VGG(nnx.Module):
    """torchvision's VGG without classifier.6: face (B, H, W, 3), normalised -> fc7's features (B, 4096)."""

    def __init__(self, variant: str, *, rngs: nnx.Rngs):
        layers, cin = [], 3
        for v in LAYERS[variant]:
            if v == "M":
                layers.append(MaxPool2d(2, 2))
            else:
                conv = Conv2d(cin, v, 3, padding=1, rngs=rngs)
                layers += [initialised(conv, (2.0 / (9 * v)) ** 0.5, rngs=rngs), jax.nn.relu]
                cin = v
        self.features = nnx.Sequential(*layers)
        channels, width = VARIANTS[variant]
        self.classifier = nnx.Sequential(
            initialised(Linear(channels * 7 * 7, width, rngs=rngs), 0.01, rngs=rngs), jax.nn.relu,
            Dropout(0.5, rngs=rngs),
            initialised(Linear(width, width, rngs=rngs), 0.01, rngs=rngs), jax.nn.relu,
            Dropout(0.5, rngs=rngs),
        )  # fmt: skip

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> (B, 4096), torchvision's forward without classifier.6."""
        return self.classifier(rearrange(adaptive_avg_pool2d(self.features(x), 7), "b h w c -> b (c h w)"))


class Vgg(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/32)(W/32), dim), all valid; pooled (B, dim).

    pooled: fc7's 4096 features projected to dim by `embed`. Tokens: each position of the last conv feature map
    (512 channels, H/32 x W/32, before the 7 x 7 average pool) projected to dim by `proj`, plus a learned position
    embedding `pos`. `embed`, `proj` and `pos` are the project's, initialised fresh, outside `backbone`.
    image_size: a multiple of 32. The published weights were trained at 224 (a 7 x 7 map); torchvision's adaptive
    average pool brings any other map to 7 x 7 (averaging larger ones, repeating positions of smaller ones), so fc6
    keeps its shape and the published weights load at every size.
    The face arrives in torch's layout and is moved to channels last, flax's layout for convolutions.
    """

    def __init__(self, variant: str, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"vgg variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if image_size % 32:
            raise ValueError(f"vgg needs image_size divisible by 32, got {image_size}")
        channels, width = VARIANTS[variant]
        self.backbone = VGG(variant, rngs=rngs)
        self.embed = Linear(width, dim, rngs=rngs)
        self.proj = Linear(channels, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), ((image_size // 32) ** 2, dim)))

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = rearrange(batch["face"], "b c h w -> b h w c")  # channels last
        b = self.backbone
        fmap = b.features((face - jnp.array(MEAN)) / jnp.array(STD))  # (B, H/32, W/32, 512)
        fc7 = b.classifier(rearrange(adaptive_avg_pool2d(fmap, 7), "b h w c -> b (c h w)"))  # (B, 4096)
        x = self.proj(rearrange(fmap, "b h w c -> b (h w) c")) + self.pos[...]  # (B, N, D)
        mask = jnp.ones(x.shape[:2], dtype=bool)  # (B, N)
        return summarised(x, mask, self.embed(fc7))
