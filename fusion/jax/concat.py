"""Feature-level fusion: add, multiply or concatenate the pooled modality embeddings, then an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import masked_mean
from encoders.jax.layers import LayerNorm, Linear, gelu
from fusion.jax.blocks import OneStream

RULES = ("add", "mul", "concat")


def combine_pooled(pooled: jax.Array, is_present: jax.Array, rule: str) -> jax.Array:
    """pooled (B, M, D) with is_present (B, M) -> the combined features, over the present modalities:
    add:    mean_m p_m                                  (B, D); zeros when none is present
    mul:    prod_m p_m                                  (B, D); ones (the empty product) when none is
    concat: [p_1, f_1, ..., p_M, f_M], p_m = 0 and the flag f_m = 0 where m is absent   (B, M (D + 1))
    """
    keep = is_present[..., None]  # (B, M, 1)
    if rule == "add":
        return masked_mean(pooled, is_present)  # (B, D)
    if rule == "mul":
        return jnp.where(keep, pooled, 1.0).prod(1)  # (B, D)
    x = jnp.concatenate([jnp.where(keep, pooled, 0.0), keep.astype(pooled.dtype)], -1)  # (B, M, D + 1)
    return x.reshape(x.shape[0], -1)  # (B, M (D + 1))


class Concat(OneStream):
    """fused = MLP(LN(combine_pooled(pooled vectors, rule))), the MLP D_in -> 2D -> D with GELU.

    A missing modality contributes nothing: `add` averages the present vectors (a mean, not a sum, so
    the scale does not depend on how many are present), `mul` multiplies the present ones (an absent
    one counts as 1, the identity of the product), `concat` puts zeros in an absent modality's slot and
    a presence flag per modality beside it, as channel stacking does: zeros alone cannot tell "absent"
    from "present with small features", the flag lets the MLP learn a different response to each
    missing pattern. The LayerNorm makes the product's scale, which grows with the number of factors,
    harmless to the MLP."""

    def __init__(self, dim: int, modalities: Sequence[str], combine_features: str, *, rngs: nnx.Rngs):
        if combine_features not in RULES:
            raise ValueError(f"concat fusion: unknown combine_features {combine_features!r} (add, mul or concat)")
        self.modalities = tuple(sorted(modalities))
        self.combine_features = combine_features
        width = len(self.modalities) * (dim + 1) if combine_features == "concat" else dim
        self.mlp = nnx.Sequential(
            LayerNorm(width, rngs=rngs), Linear(width, 2 * dim, rngs=rngs), gelu, Linear(2 * dim, dim, rngs=rngs)
        )

    def __call__(self, outputs: dict[str, EncoderOutput], present: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """-> {"fused": (B, D)}. Reads the pooled vectors only."""
        pooled = jnp.stack([outputs[m].pooled for m in self.modalities], 1)  # (B, M, D)
        is_present = jnp.stack([present[m] for m in self.modalities], 1)  # (B, M)
        return {"fused": self.mlp(combine_pooled(pooled, is_present, self.combine_features))}  # (B, D)
