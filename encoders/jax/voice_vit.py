"""A small transformer over log-mel spectrogram strips (in the spirit of AST, Gong et al. 2021)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import Transformer, summarised
from encoders.jax.frontend import make_frontend
from encoders.jax.layers import Dropout, Linear

STRIP = 4  # frames per token: one full-frequency strip of 40 ms


def sinusoid_positions(n: int, dim: int) -> jax.Array:
    """Fixed positions (n, dim) of Vaswani et al. 2017: [sin(p w_i), cos(p w_i)], w_i = 10000^(-2i/D).

    Fixed rather than learned because the number of strips depends on the voice length, which the
    encoder does not know at construction."""
    freq = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # (D/2,)
    angle = jnp.arange(n, dtype=jnp.float32)[:, None] * freq  # (n, D/2)
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], 1)  # (n, D)


class VoiceVit(nnx.Module):
    """voice (B, S), voice_len (B,) -> tokens (B, 1 + T/4, dim) = [CLS, 40 ms strips].

    The front end ("logmel40" log-mel or "fbank80" Kaldi fbank, + SpecAugment in training), non-overlapping
    strips of 4 frames x all bins,
    a linear strip embedding, sinusoidal positions, a CLS token and a pre-norm transformer whose
    attention ignores padded strips. A strip is valid when all its frames are.
    """

    def __init__(
        self,
        dim: int,
        sample_rate: int,
        layers: int,
        heads: int,
        dropout: float,
        spec_augment: bool,
        frontend: str = "logmel40",
        *,
        rngs: nnx.Rngs,
    ):
        if dim % 2:
            raise ValueError(f"voice_vit needs an even dim for its sinusoidal positions, got {dim}")
        self.frontend = make_frontend(frontend, sample_rate, spec_augment, rngs=rngs)
        self.embed = Linear(self.frontend.bins * STRIP, dim, rngs=rngs)
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim)))
        self.drop = Dropout(dropout, rngs=rngs)
        self.transformer = Transformer(dim, layers, heads, dropout, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        feats, frame_mask = self.frontend(batch["voice"], batch["voice_len"])  # (B, M, T), (B, T)
        n = feats.shape[-1] // STRIP  # trailing frames that fill no strip are dropped
        strips = rearrange(feats[..., : n * STRIP], "b m (n s) -> b n (s m)", s=STRIP)
        x = self.embed(strips) + sinusoid_positions(n, self.cls.shape[-1])  # (B, N, D)
        cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[2])).astype(x.dtype)
        x = jnp.concatenate([cls, x], 1)  # (B, 1+N, D)
        mask = frame_mask.sum(1, keepdims=True) // STRIP > jnp.arange(n)  # (B, N)
        mask = jnp.concatenate([jnp.ones((x.shape[0], 1), dtype=bool), mask], 1)  # (B, 1+N): CLS is always valid
        x = self.transformer(self.drop(x), mask)
        return summarised(x[:, 1:], mask[:, 1:], x[:, 0])
