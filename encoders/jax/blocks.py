"""Pieces shared by the jax encoders and fusion modules: masked mean pooling, scaled dot-product attention,
masked attention (with an optional learned null key), the transformer MLP and a pre-norm transformer.

Masks are bool, True = a real token. Masked entries are removed with `jnp.where`, never by
multiplying with zero, so a padded value cannot leak into the output even when it is not finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from encoders import EncoderOutput
from encoders.jax.layers import Dropout, LayerNorm, Linear, gelu


def summarised(tokens: jax.Array, mask: jax.Array, pooled: jax.Array) -> EncoderOutput:
    """EncoderOutput whose first token is the pooled summary (B, 1 + N, D), valid where any token is.

    Every encoder returns its summary among its tokens (as a ViT's CLS), so a token-level fusion
    (early, cross-attention, stacking) trains the pooling layers too, and pooled-level fusion (late,
    gated) trains everything that produces the tokens: the whole encoder learns from any fusion.
    """
    tokens = jnp.concatenate([pooled[:, None].astype(tokens.dtype), tokens], 1)  # (B, 1 + N, D)
    return EncoderOutput(tokens, jnp.concatenate([mask.any(1, keepdims=True), mask], 1), pooled)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x (B, N, D) over the positions where mask (B, N) is True -> (B, D); zeros where none is."""
    total = jnp.where(mask[..., None], x, 0.0).sum(1)  # (B, D)
    count = jnp.maximum(mask.sum(1, keepdims=True), 1)  # (B, 1)
    return total / count


@jax.custom_vjp
def attention(q: jax.Array, k: jax.Array, v: jax.Array, keep: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(Dh)) v over the keys where keep is True: torch's F.scaled_dot_product_attention
    with a boolean mask. q (B, H, Nq, Dh), k and v (B, H, Nk, Dh), keep broadcastable to (B, H, Nq, Nk)
    -> (B, H, Nq, Dh). The scores and the softmax are float32 whatever the inputs' dtype (bf16 matmuls).

    Written out in torch's layout with its gradient by hand, FlashAttention's backward without the tiling
    (Dao et al. 2022): dS = P * (dP - rowsum(dO * O)), from the stored probabilities P. It is the
    derivative autodiff takes (tests/encoders/test_blocks_jax.py holds it to jax.nn.dot_product_attention's
    and to torch's), in fewer passes over the (B, H, Nq, Nk) scores, and the scale multiplies q and k, not
    the scores: on XLA:CPU the attention's forward + backward takes 16 ms instead of jax.nn's 26-36 ms at
    the default model's size (docs/training.md, "Measured").
    """
    return _attention_forward(q, k, v, keep)[0]


def _attention_forward(q, k, v, keep):
    scores = jnp.einsum("bhqd,bhkd->bhqk", q * q.shape[-1] ** -0.5, k, preferred_element_type=jnp.float32)
    p = jax.nn.softmax(jnp.where(keep, scores, jnp.finfo(jnp.float32).min), -1)  # (B, H, Nq, Nk)
    out = jnp.einsum("bhqk,bhkd->bhqd", p.astype(v.dtype), v)  # (B, H, Nq, Dh)
    return out, (q, k, v, p, out)


def _attention_backward(saved, d_out):
    q, k, v, p, out = saved
    scale = q.shape[-1] ** -0.5
    d_v = _transposed_product(d_out, p.astype(v.dtype))
    d_p = jnp.einsum("bhqd,bhkd->bhqk", d_out, v, preferred_element_type=jnp.float32)
    row = jnp.einsum("bhqd,bhqd->bhq", d_out, out, preferred_element_type=jnp.float32)[..., None]  # = rowsum(dP * P)
    d_scores = (p * (d_p - row)).astype(q.dtype)  # (B, H, Nq, Nk), zero where not kept (P is)
    d_q = jnp.einsum("bhqk,bhkd->bhqd", d_scores, k * scale)
    d_k = _transposed_product(q * scale, d_scores)
    return d_q, d_k, d_v, None


def _transposed_product(a: jax.Array, p: jax.Array) -> jax.Array:
    """p^T a for p (B, H, Nq, Nk) and a (B, H, Nq, Dh) -> (B, H, Nk, Dh), as (a^T p)^T.

    XLA:CPU multiplies by the transposed (Nq, Nk) matrix at a quarter of the speed of a^T p, whose large
    operand is read as it lies (4.3 against 1.0 ms at the default model's size); the barrier keeps XLA's
    simplifier from folding the final transpose back into the product.
    """
    return jax.lax.optimization_barrier(jnp.einsum("bhqd,bhqk->bhdk", a, p)).swapaxes(-1, -2)


attention.defvjp(_attention_forward, _attention_backward)


class Attention(nnx.Module):
    """Multi-head attention from queries x (B, Nq, D) to the context tokens (B, Nk, D) where mask is True
    (Vaswani et al. 2017); self-attention when the context is x.

    A query whose context is all masked (a missing modality) needs somewhere to look, or the softmax over
    nothing gives NaN, which would poison the gradients. With null_key=True a learned null key/value is
    prepended to the context and never masked: such a query attends to it, and any query can take "no
    information" from the context (fusion's cross-modal attention). With null_key=False such a query
    attends to all context tokens instead: finite, and unused downstream (encoders' self-attention).
    """

    def __init__(self, dim: int, heads: int, null_key: bool = False, *, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = Linear(dim, dim, rngs=rngs)
        self.kv = Linear(dim, 2 * dim, rngs=rngs)
        self.out = Linear(dim, dim, rngs=rngs)
        self.null = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim))) if null_key else None

    def __call__(self, x: jax.Array, context: jax.Array, mask: jax.Array) -> jax.Array:
        """x (B, Nq, D) attends to context (B, Nk, D) where mask (B, Nk) -> (B, Nq, D)."""
        B, Nq, D = x.shape
        if self.null is None:
            mask = mask | ~mask.any(1, keepdims=True)  # (B, Nk)
        else:
            context = jnp.concatenate([jnp.broadcast_to(self.null[...], (B, 1, D)), context], 1)  # (B, 1 + Nk, D)
            mask = jnp.concatenate([jnp.ones((B, 1), bool), mask], 1)  # (B, 1 + Nk)
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, H, Nq, Dh)
        k, v = rearrange(self.kv(context), "b n (two h d) -> two b h n d", two=2, h=self.heads)  # (B, H, Nk, Dh)
        y = attention(q, k, v, mask[:, None, None, :])  # (B, H, Nq, Dh)
        return self.out(rearrange(y, "b h n d -> b n (h d)"))


def mlp(dim: int, *, rngs: nnx.Rngs) -> nnx.Sequential:
    """The transformer feed-forward: D -> 4D -> D with GELU."""
    return nnx.Sequential(Linear(dim, 4 * dim, rngs=rngs), gelu, Linear(4 * dim, dim, rngs=rngs))


class Block(nnx.Module):
    """Pre-norm transformer block: x + SelfAttn(LN(x)), then x + MLP(LN(x)) (Xiong et al. 2020)."""

    def __init__(self, dim: int, heads: int, dropout: float, null_key: bool = False, *, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(dim, rngs=rngs)
        self.attn = Attention(dim, heads, null_key, rngs=rngs)
        self.norm2 = LayerNorm(dim, rngs=rngs)
        self.mlp = mlp(dim, rngs=rngs)
        self.drop = Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """x (B, N, D); mask (B, N): the tokens that may be attended to -> (B, N, D)."""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nnx.Module):
    """A stack of pre-norm blocks and the final LayerNorm that pre-norm needs."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([Block(dim, heads, dropout, rngs=rngs) for _ in range(layers)])
        self.norm = LayerNorm(dim, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """x (B, N, D), mask (B, N) -> (B, N, D)."""
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)
