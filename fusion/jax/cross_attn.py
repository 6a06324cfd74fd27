"""Intermediate fusion: one stream per modality, exchanging information by cross-attention."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import Attention, Block, masked_mean
from encoders.jax.layers import Dropout, LayerNorm
from fusion.jax.blocks import OneStream


class CrossLayer(nnx.Module):
    """One modality's layer: x + CrossAttn(LN(x), LN(others)), then a pre-norm self-attention block."""

    def __init__(self, dim: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.norm_q = LayerNorm(dim, rngs=rngs)
        self.norm_kv = LayerNorm(dim, rngs=rngs)
        self.cross = Attention(dim, heads, null_key=True, rngs=rngs)
        self.drop = Dropout(dropout, rngs=rngs)
        self.block = Block(dim, heads, dropout, null_key=True, rngs=rngs)

    def __call__(self, x: jax.Array, keep: jax.Array, others: jax.Array, others_keep: jax.Array) -> jax.Array:
        """x (B, N, D) with keep (B, N); others (B, K, D) with others_keep (B, K) -> (B, N, D)."""
        x = x + self.drop(self.cross(self.norm_q(x), self.norm_kv(others), others_keep))
        return self.block(x, keep)


class CrossAttn(OneStream):
    """Each modality keeps its own token stream (own weights). In every layer, each stream's tokens
    query the tokens of all other present modalities (cross-attention, with the null key when none is
    present), then attend to themselves and go through an MLP. All streams read the other streams'
    state from the start of the layer, so the update is symmetric. The fused embedding is
    LN(mean over present modalities of each stream's masked-mean-pooled tokens)."""

    def __init__(self, dim: int, modalities: Sequence[str], layers: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.modalities = tuple(sorted(modalities))
        self.modality_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (len(self.modalities), dim)))  # (M, D)
        self.layers = nnx.List(
            [nnx.Dict({m: CrossLayer(dim, heads, dropout, rngs=rngs) for m in self.modalities}) for _ in range(layers)]
        )
        self.norm = LayerNorm(dim, rngs=rngs)

    def __call__(self, outputs: dict[str, EncoderOutput], present: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """-> {"fused": (B, D)}. A missing modality's tokens are never keys, its stream never pooled."""
        mods = self.modalities
        x = {m: outputs[m].tokens + self.modality_emb[i] for i, m in enumerate(mods)}  # (B, N_m, D)
        keep = {m: outputs[m].mask & present[m][:, None] for m in mods}  # (B, N_m)
        for layer in self.layers:
            new = {}
            for m in mods:
                others = [o for o in mods if o != m]
                context = jnp.concatenate([x[o] for o in others], 1) if others else x[m][:, :0]  # (B, K, D)
                context_keep = jnp.concatenate([keep[o] for o in others], 1) if others else keep[m][:, :0]  # (B, K)
                new[m] = layer[m](x[m], keep[m], context, context_keep)
            x = new
        pooled = jnp.stack([masked_mean(x[m], keep[m]) for m in mods], 1)  # (B, M, D)
        is_present = jnp.stack([present[m] for m in mods], 1)  # (B, M)
        return {"fused": self.norm(masked_mean(pooled, is_present))}  # (B, D)
