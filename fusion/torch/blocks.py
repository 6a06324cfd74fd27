"""Pieces shared by the torch fusion modules: masked softmax and the base of the modules that return one
"fused" stream. Attention (with its learned null key), the transformer block, masked mean pooling and the
MLP are the encoders' (encoders/torch/blocks.py).

Masks are bool, True = keep. Masked entries are removed with `torch.where`, never by multiplying with
zero, so that an excluded value cannot leak into the output even when it is huge or not finite.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax of logits (B, M) over the entries where keep is True; masked entries get weight exactly 0,
    and a row with nothing kept gets all zeros (not NaN)."""
    logits = torch.where(keep, logits, torch.finfo(logits.dtype).min)
    w = torch.where(keep, logits.softmax(-1), 0.0)  # (B, M)
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


class OneStream(nn.Module):
    """Base of the modules that fuse into one stream: the decision is that stream's scores."""

    streams: tuple[str, ...] = ("fused",)
    learns_combination: bool = False

    def combine(self, log_probs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """log_probs {"fused": (B, C)} -> (B, C), unchanged."""
        return log_probs["fused"]
