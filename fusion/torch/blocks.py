"""Pieces shared by the torch fusion modules: masked softmax, attention with a null key, a pre-norm
transformer block, and the base of the modules that return one "fused" stream. Masked mean pooling and
the MLP are the encoders' (encoders/torch/blocks.py).

Masks are bool, True = keep. Masked entries are removed with `torch.where`, never by multiplying with
zero, so that an excluded value cannot leak into the output even when it is huge or not finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoders.torch.blocks import mlp


def masked_softmax(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax of logits (B, M) over the entries where keep is True; masked entries get weight exactly 0,
    and a row with nothing kept gets all zeros (not NaN)."""
    logits = logits.masked_fill(~keep, torch.finfo(logits.dtype).min)
    w = torch.where(keep, logits.softmax(-1), 0.0)  # (B, M)
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


class Attention(nn.Module):
    """Multi-head attention from queries x to a context, with a learned null key/value.

    The null token is prepended to the context and is never masked, so a query whose context is all
    masked (a missing modality, a sample with one modality) attends to it instead of producing NaN
    from a softmax over nothing. It also lets a query take "no information" from the context.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.null = nn.Parameter(0.02 * torch.randn(1, 1, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, D) attends to context (B, Nk, D) where keep (B, Nk) -> (B, Nq, D)."""
        B, Nq, D = x.shape
        H = self.heads
        context = torch.cat([self.null.expand(B, 1, D), context], 1)  # (B, 1+Nk, D)
        keep = torch.cat([keep.new_ones(B, 1), keep], 1)  # (B, 1+Nk)
        q = self.q(x).view(B, Nq, H, D // H).transpose(1, 2)  # (B, H, Nq, Dh)
        k, v = self.kv(context).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)  # 2 x (B, H, 1+Nk, Dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])  # (B, H, Nq, Dh)
        return self.out(y.transpose(1, 2).reshape(B, Nq, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + SelfAttn(LN(x)), then x + MLP(LN(x)) (Xiong et al. 2020)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, N, D); keep (B, N): the tokens that may be attended to -> (B, N, D)."""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, keep))
        return x + self.drop(self.mlp(self.norm2(x)))


class OneStream(nn.Module):
    """Base of the modules that fuse into one stream: the decision is that stream's scores."""

    streams: tuple[str, ...] = ("fused",)
    learns_combination: bool = False

    def combine(self, log_probs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """log_probs {"fused": (B, C)} -> (B, C), unchanged."""
        return log_probs["fused"]
