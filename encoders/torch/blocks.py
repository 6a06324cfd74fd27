"""Pieces shared by the torch encoders and fusion modules: masked mean pooling, masked attention (with an
optional learned null key), the transformer MLP and a pre-norm transformer.

Masks are bool, True = a real token. Masked entries are removed with `torch.where`, never by
multiplying with zero, so a padded value cannot leak into the output even when it is not finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from encoders import EncoderOutput


def summarised(tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> EncoderOutput:
    """EncoderOutput whose first token is the pooled summary (B, 1 + N, D), valid where any token is.

    Every encoder returns its summary among its tokens (as a ViT's CLS), so a token-level fusion
    (early, cross-attention, stacking) trains the pooling layers too, and pooled-level fusion (late,
    gated) trains everything that produces the tokens: the whole encoder learns from any fusion.
    """
    tokens = torch.cat([pooled[:, None].to(tokens.dtype), tokens], 1)  # (B, 1 + N, D)
    return EncoderOutput(tokens, torch.cat([mask.any(1, keepdim=True), mask], 1), pooled)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, N, D) over the positions where mask (B, N) is True -> (B, D); zeros where none is."""
    total = torch.where(mask[..., None], x, 0.0).sum(1)  # (B, D)
    count = mask.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
    return total / count


class Attention(nn.Module):
    """Multi-head attention from queries x (B, Nq, D) to the context tokens (B, Nk, D) where mask is True
    (Vaswani et al. 2017); self-attention when the context is x.

    A query whose context is all masked (a missing modality) needs somewhere to look, or the softmax over
    nothing gives NaN, which would poison the gradients. With null_key=True a learned null key/value is
    prepended to the context and never masked: such a query attends to it, and any query can take "no
    information" from the context (fusion's cross-modal attention). With null_key=False such a query
    attends to all context tokens instead: finite, and unused downstream (encoders' self-attention).
    """

    def __init__(self, dim: int, heads: int, null_key: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.null = nn.Parameter(0.02 * torch.randn(1, 1, dim)) if null_key else None

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, D) attends to context (B, Nk, D) where mask (B, Nk) -> (B, Nq, D)."""
        B, Nq, D = x.shape
        if self.null is None:
            mask = mask | ~mask.any(1, keepdim=True)  # (B, Nk)
        else:
            context = torch.cat([self.null.expand(B, 1, D), context], 1)  # (B, 1 + Nk, D)
            mask = torch.cat([mask.new_ones(B, 1), mask], 1)  # (B, 1 + Nk)
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, H, Nq, Dh)
        k, v = rearrange(self.kv(context), "b n (two h d) -> two b h n d", two=2, h=self.heads)  # (B, H, Nk, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, H, Nq, Dh)
        return self.out(rearrange(y, "b h n d -> b n (h d)"))


def mlp(dim: int) -> nn.Sequential:
    """The transformer feed-forward: D -> 4D -> D with GELU."""
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + SelfAttn(LN(x)), then x + MLP(LN(x)) (Xiong et al. 2020)."""

    def __init__(self, dim: int, heads: int, dropout: float, null_key: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, null_key)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, D); mask (B, N): the tokens that may be attended to -> (B, N, D)."""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """A stack of pre-norm blocks and the final LayerNorm that pre-norm needs."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), mask (B, N) -> (B, N, D)."""
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)
