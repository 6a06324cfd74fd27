"""A small randomly initialised transformer text encoder."""

from __future__ import annotations

import jax
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.blocks import Transformer, masked_mean, summarised
from encoders.jax.layers import Dropout, Embed


class TextTiny(nnx.Module):
    """text_ids (B, L) with text_mask (B, L) -> tokens (B, 1 + L, dim), pooled = masked mean.

    Token embeddings plus learned positions (L <= max_len), then a pre-norm transformer whose
    attention ignores padded positions. Pooled is the mean of the real tokens' outputs, so padding
    never changes it.
    """

    def __init__(
        self, dim: int, vocab_size: int, max_len: int, layers: int, heads: int, dropout: float, *, rngs: nnx.Rngs
    ):
        self.embed = Embed(vocab_size, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, dim)))
        self.drop = Dropout(dropout, rngs=rngs)
        self.transformer = Transformer(dim, layers, heads, dropout, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        ids, mask = batch["text_ids"], batch["text_mask"].astype(bool)  # (B, L)
        if ids.shape[1] > self.pos.shape[0]:
            raise ValueError(f"text_tiny: {ids.shape[1]} tokens exceed max_len {self.pos.shape[0]}")
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, L, D)
        x = self.transformer(self.drop(x), mask)
        return summarised(x, mask, masked_mean(x, mask))
