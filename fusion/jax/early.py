"""Early (token-level) fusion: one shared transformer over the tokens of every modality."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import Block
from encoders.jax.layers import LayerNorm
from fusion.jax.blocks import OneStream


class Early(OneStream):
    """A CLS token and all modality tokens (each plus a learned modality embedding) go through one
    pre-norm transformer; the fused embedding is the final CLS. Every token can attend to every other
    modality's tokens from the first layer on, which is what early fusion means."""

    def __init__(self, dim: int, modalities: Sequence[str], layers: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.modalities = tuple(sorted(modalities))
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim)))
        self.modality_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (len(self.modalities), dim)))  # (M, D)
        self.blocks = nnx.List([Block(dim, heads, dropout, null_key=True, rngs=rngs) for _ in range(layers)])
        self.norm = LayerNorm(dim, rngs=rngs)

    def __call__(self, outputs: dict[str, EncoderOutput], present: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """-> {"fused": (B, D)}. Tokens of a missing modality are never attended to."""
        B, D = present[self.modalities[0]].shape[0], self.cls.shape[-1]
        tokens = [jnp.broadcast_to(self.cls[...], (B, 1, D))]
        keep = [jnp.ones((B, 1), bool)]
        for i, m in enumerate(self.modalities):
            tokens.append(outputs[m].tokens + self.modality_emb[i])  # (B, N_m, D)
            keep.append(outputs[m].mask & present[m][:, None])  # (B, N_m)
        x = jnp.concatenate(tokens, 1)  # (B, 1 + sum N_m, D)
        keep = jnp.concatenate(keep, 1)  # (B, 1 + sum N_m)
        for block in self.blocks:
            x = block(x, keep)
        return {"fused": self.norm(x[:, 0])}  # (B, D)
