"""Vision Transformer face backbones from timm: ViT-S/16 and ViT-B/16 (Dosovitskiy et al. 2021).

The backbone reproduces timm's VisionTransformer with timm's parameter names (cls_token, pos_embed,
patch_embed.proj, blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm), so timm's published
files load into it through encoders/jax/convert.py (after encoders/checkpoints/vit.py resamples their 224 px grid).
The face arrives in torch's layout and is moved to channels last, flax's layout for convolutions.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import summarised
from encoders.jax.layers import Conv2d, LayerNorm, Linear, gelu

# timm's model and its architecture numbers: patch side, width, blocks, attention heads.
VARIANTS = {
    "vit_s16": dict(timm="vit_small_patch16_224", patch=16, width=384, depth=12, heads=6),
    "vit_b16": dict(timm="vit_base_patch16_224", patch=16, width=768, depth=12, heads=12),
}
# timm's published weights of both (AugReg, Steiner et al. 2022) take (x - 0.5) / 0.5 (their pretrained_cfg).
MEAN, STD = 0.5, 0.5
EPS = 1e-6  # timm ViT's LayerNorm eps
INIT_STD = 0.02  # timm ViT's initialisation of its Linear weights and position embeddings (init_weights_vit_timm)


def linear(din: int, dout: int, std: float, *, rngs: nnx.Rngs) -> nnx.Linear:
    """torch.nn.Linear initialised as timm initialises its models' Linear layers: weight N(0, std), bias 0."""
    return nnx.Linear(din, dout, kernel_init=nnx.initializers.normal(std), rngs=rngs)


class Attention(nnx.Module):
    """timm's multi-head self-attention: one qkv projection laid out (3, heads, head width), then proj."""

    def __init__(self, width: int, heads: int, std: float, *, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = linear(width, 3 * width, std, rngs=rngs)
        self.proj = linear(width, width, std, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, N, W) -> (B, N, W)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b n h d", three=3, h=self.heads)  # (B, N, H, Dh)
        y = jax.nn.dot_product_attention(q, k, v)  # (B, N, H, Dh), scaled by Dh ** -0.5
        return self.proj(rearrange(y, "b n h d -> b n (h d)"))


class Mlp(nnx.Module):
    """timm's Mlp: fc1, activation, fc2."""

    def __init__(self, width: int, hidden: int, act: Callable, std: float, *, rngs: nnx.Rngs):
        self.fc1 = linear(width, hidden, std, rngs=rngs)
        self.act = act
        self.fc2 = linear(hidden, width, std, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class Block(nnx.Module):
    """timm's pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)) (no layer scale).
    Its Linear weights start N(0, std), as the timm model that holds it initialises them."""

    def __init__(
        self, width: int, heads: int, mlp_ratio: float, act: Callable, eps: float, std: float, *, rngs: nnx.Rngs
    ):
        self.norm1 = LayerNorm(width, eps=eps, rngs=rngs)
        self.attn = Attention(width, heads, std, rngs=rngs)
        self.norm2 = LayerNorm(width, eps=eps, rngs=rngs)
        self.mlp = Mlp(width, int(width * mlp_ratio), act, std, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, N, W) -> (B, N, W)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nnx.Module):
    """Non-overlapping P x P patches, each projected linearly (a stride-P convolution)."""

    def __init__(self, patch: int, width: int, *, rngs: nnx.Rngs):
        self.proj = Conv2d(3, width, patch, stride=patch, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> (B, (H/P)(W/P), W) in row-major patch order."""
        return rearrange(self.proj(x), "b h w c -> b (h w) c")


class VisionTransformer(nnx.Module):
    """timm's VisionTransformer without its head: CLS token, learned positions, pre-norm blocks, final norm,
    initialised as timm does (CLS N(0, 1e-6), positions and Linear weights N(0, 0.02), the patch conv torch's)."""

    def __init__(self, image_size: int, patch: int, width: int, depth: int, heads: int, *, rngs: nnx.Rngs):
        n = (image_size // patch) ** 2
        self.cls_token = nnx.Param(1e-6 * jax.random.normal(rngs.params(), (1, 1, width)))
        self.pos_embed = nnx.Param(INIT_STD * jax.random.normal(rngs.params(), (1, 1 + n, width)))
        self.patch_embed = PatchEmbed(patch, width, rngs=rngs)
        self.blocks = nnx.Sequential(*(Block(width, heads, 4.0, gelu, EPS, INIT_STD, rngs=rngs) for _ in range(depth)))
        self.norm = LayerNorm(width, eps=EPS, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, H, W, 3) -> (B, 1 + N, W): CLS and patches after the final norm."""
        x = self.patch_embed(x)  # (B, N, W)
        cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, x.shape[2])).astype(x.dtype)
        x = jnp.concatenate([cls, x], 1) + self.pos_embed[...]  # (B, 1 + N, W)
        return self.norm(self.blocks(x))


class Vit(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/16)(W/16), dim); pooled = the CLS output projected.

    timm's ViT (LayerNorm eps 1e-6, exact GELU, position embeddings for the configured grid) after the
    normalisation its published weights expect. pooled is timm's pooled output (the CLS token after the final
    norm, global_pool="token") projected to dim; tokens are the summary and the patch outputs, projected alike.
    """

    def __init__(self, variant: str, dim: int, image_size: int, *, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"vit: unknown variant {variant!r}, expected one of {sorted(VARIANTS)}")
        v = VARIANTS[variant]
        if image_size % v["patch"]:
            raise ValueError(f"{variant}: image_size {image_size} is not a multiple of the patch {v['patch']}")
        self.backbone = VisionTransformer(
            image_size, v["patch"], v["width"], v["depth"], v["heads"], rngs=rngs
        )  # fmt: skip
        self.proj = Linear(v["width"], dim, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = rearrange((batch["face"] - MEAN) / STD, "b c h w -> b h w c")  # channels last
        x = self.backbone(face)  # (B, 1 + N, W): CLS and patches after the final norm
        pooled = self.proj(x[:, 0])  # (B, D)
        tokens = self.proj(x[:, 1:])  # (B, N, D)
        mask = jnp.ones(tokens.shape[:2], dtype=bool)  # (B, N)
        return summarised(tokens, mask, pooled)
