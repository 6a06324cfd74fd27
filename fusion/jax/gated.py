"""Gated fusion: FiLM conditioning across modalities, then a learned gate over the modalities."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import masked_mean
from encoders.jax.layers import Linear
from fusion.jax.blocks import OneStream, masked_softmax


class Gated(OneStream):
    """For each modality m, with c_m the mean pooled vector of the *other* present modalities:

        gamma, beta = W_m c_m + b_m;   h_m = masked_mean((1 + gamma) * tokens_m + beta)

    (FiLM, Perez et al. 2018), with gamma = beta = 0 (identity) when no other modality is present. The
    fused embedding is sum_m g_m h_m with g = softmax over the present modalities of the gate logits
    w_m . h_m: the weights sum to one whatever the number of present modalities, so the scale of the
    output does not depend on it."""

    def __init__(self, dim: int, modalities: Sequence[str], *, rngs: nnx.Rngs):
        self.modalities = tuple(sorted(modalities))
        self.film = nnx.Dict({m: Linear(dim, 2 * dim, rngs=rngs) for m in self.modalities})
        self.gate = nnx.Dict({m: Linear(dim, 1, rngs=rngs) for m in self.modalities})

    def __call__(self, outputs: dict[str, EncoderOutput], present: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """-> {"fused": (B, D)}. A missing modality conditions no other and gets gate weight 0."""
        mods = self.modalities
        pooled = jnp.stack([outputs[m].pooled for m in mods], 1)  # (B, M, D)
        is_present = jnp.stack([present[m] for m in mods], 1)  # (B, M)
        hs, logits = [], []
        for i, m in enumerate(mods):
            others = is_present.at[:, i].set(False)  # (B, M)
            context = masked_mean(pooled, others)  # (B, D)
            gamma, beta = jnp.split(self.film[m](context), 2, -1)  # 2 x (B, D)
            has_context = others.any(1, keepdims=True)  # (B, 1)
            gamma = jnp.where(has_context, gamma, 0.0)
            beta = jnp.where(has_context, beta, 0.0)
            x = (1 + gamma[:, None]) * outputs[m].tokens + beta[:, None]  # (B, N_m, D)
            hs.append(masked_mean(x, outputs[m].mask))  # (B, D)
            logits.append(self.gate[m](hs[-1]))  # (B, 1)
        g = masked_softmax(jnp.concatenate(logits, 1), is_present)  # (B, M)
        h = jnp.where(is_present[..., None], jnp.stack(hs, 1), 0.0)  # (B, M, D)
        return {"fused": (g[..., None] * h).sum(1)}  # (B, D)
