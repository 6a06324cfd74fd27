"""Channel stacking: the input-level early-fusion baseline."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.layers import LayerNorm, Linear, gelu
from fusion.jax.blocks import OneStream


def masked_adaptive_pool(x: jax.Array, keep: jax.Array, positions: int) -> jax.Array:
    """Resample the valid tokens of x (B, N, D) to `positions` tokens -> (B, T, D).

    Adaptive average pooling (as torch's adaptive_avg_pool1d) over the kept tokens only, taken in
    order: with L kept tokens, output t is the mean of kept tokens r with
    floor(t L / T) <= r < ceil((t + 1) L / T). A row with no kept token gives zeros.
    """
    T = positions
    L = keep.sum(1, keepdims=True)  # (B, 1)
    rank = keep.cumsum(1) - 1  # (B, N): index of each kept token among the kept ones
    t = jnp.arange(T)  # (T,)
    start = (t * L) // T  # (B, T)
    end = ((t + 1) * L + T - 1) // T  # (B, T), ceil division
    r = rank[:, None, :]  # (B, 1, N)
    member = keep[:, None, :] & (r >= start[..., None]) & (r < end[..., None])  # (B, T, N)
    w = member.astype(x.dtype)
    w = w / jnp.maximum(w.sum(-1, keepdims=True), 1)
    return w @ jnp.where(keep[..., None], x, 0.0)  # (B, T, D)


class Stack(OneStream):
    """Each modality's tokens are resampled to `tokens` positions and stacked along channels with a
    presence flag per modality: (B, T, M * (D + 1)). A per-position MLP maps the channels to D and the
    positions are averaged. A missing modality's channels are zero and its flag is 0, so the MLP can tell
    "absent" from "present with small features"."""

    def __init__(self, dim: int, modalities: Sequence[str], tokens: int, *, rngs: nnx.Rngs):
        self.modalities = tuple(sorted(modalities))
        self.tokens = tokens
        channels = len(self.modalities) * (dim + 1)
        self.mlp = nnx.Sequential(
            LayerNorm(channels, rngs=rngs), Linear(channels, 2 * dim, rngs=rngs), gelu, Linear(2 * dim, dim, rngs=rngs)
        )

    def __call__(self, outputs: dict[str, EncoderOutput], present: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """-> {"fused": (B, D)}."""
        channels = []
        for m in self.modalities:
            x = masked_adaptive_pool(outputs[m].tokens, outputs[m].mask, self.tokens)  # (B, T, D)
            flag = present[m][:, None, None]  # (B, 1, 1)
            channels.append(jnp.where(flag, x, 0.0))
            channels.append(jnp.broadcast_to(flag.astype(x.dtype), (x.shape[0], self.tokens, 1)))  # (B, T, 1)
        x = jnp.concatenate(channels, -1)  # (B, T, M * (D + 1))
        return {"fused": self.mlp(x).mean(1)}  # (B, D)
