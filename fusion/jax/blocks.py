"""Pieces shared by the jax fusion modules: masked softmax and the base of the modules that return one
"fused" stream. Attention (with its learned null key), the transformer block, masked mean pooling and the
MLP are the encoders' (encoders/jax/blocks.py).

Masks are bool, True = keep. Masked entries are removed with `jnp.where`, never by multiplying with
zero, so that an excluded value cannot leak into the output even when it is huge or not finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def masked_softmax(logits: jax.Array, keep: jax.Array) -> jax.Array:
    """Softmax of logits (B, M) over the entries where keep is True; masked entries get weight exactly 0,
    and a row with nothing kept gets all zeros (not NaN)."""
    logits = jnp.where(keep, logits, jnp.finfo(logits.dtype).min)
    w = jnp.where(keep, jax.nn.softmax(logits, -1), 0.0)  # (B, M)
    return w / jnp.maximum(w.sum(-1, keepdims=True), jnp.finfo(w.dtype).tiny)


class OneStream(nnx.Module):
    """Base of the modules that fuse into one stream: the decision is that stream's scores."""

    streams: tuple[str, ...] = ("fused",)
    learns_combination: bool = False

    def combine(self, log_probs: dict[str, jax.Array], present: dict[str, jax.Array]) -> jax.Array:
        """log_probs {"fused": (B, C)} -> (B, C), unchanged."""
        return log_probs["fused"]
