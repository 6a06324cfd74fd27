"""A small Vision Transformer face encoder (Dosovitskiy et al. 2021)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import Transformer, summarised
from encoders.jax.layers import Dropout, Linear


class FaceVit(nnx.Module):
    """face (B, 3, H, W) in [0, 1] -> tokens (B, 1 + (H/P)(W/P), dim) = [CLS, patches]; pooled = CLS.

    Non-overlapping P x P patches with P = min(8, image_size // 4) (at least a 4 x 4 grid), a linear
    patch embedding, learned positions, a CLS token and a pre-norm transformer. Tokens are the CLS
    output (the summary, encoders/jax/blocks.py) followed by the patch outputs.
    """

    def __init__(self, dim: int, image_size: int, layers: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.patch = min(8, image_size // 4)
        if image_size % self.patch:
            raise ValueError(f"face_vit: image_size {image_size} is not a multiple of patch {self.patch}")
        n = (image_size // self.patch) ** 2
        self.embed = Linear(3 * self.patch**2, dim, rngs=rngs)
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim)))
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1 + n, dim)))
        self.drop = Dropout(dropout, rngs=rngs)
        self.transformer = Transformer(dim, layers, heads, dropout, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        face = 2 * batch["face"] - 1  # centre [0, 1] on 0
        patches = rearrange(face, "b c (h p) (w q) -> b (h w) (p q c)", p=self.patch, q=self.patch)
        x = self.embed(patches)  # (B, N, D)
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[2])).astype(x.dtype)
        x = jnp.concatenate([cls, x], 1) + self.pos[...]  # (B, 1+N, D)
        mask = jnp.ones(x.shape[:2], dtype=bool)  # (B, 1+N)
        x = self.transformer(self.drop(x), mask)
        return summarised(x[:, 1:], mask[:, 1:], x[:, 0])
