"""Late fusion: one stream per modality, combined only at the decision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from encoders import EncoderOutput
from encoders.torch.blocks import mlp
from fusion.torch.blocks import masked_softmax


class Late(nn.Module):
    """Stream m = pooled_m + MLP(LN(pooled_m)), from modality m alone, so modalities never interact
    before the decision. A missing modality's stream is zero: `present` says to ignore it, and zero
    keeps every output a function of the present data only.

    `combine` turns per-stream class log-probabilities log p_m (B, C) into the decision, over the
    present streams P:
        mean:    log (1/|P| sum_{m in P} p_m)
        product: log_softmax(sum_{m in P} log p_m)    (renormalised product of probabilities)
        learned: log_softmax(sum_{m in P} w_m log p_m),  w = softmax over P of learned logits
    A sample with no present stream gets the uniform distribution.
    """

    def __init__(self, dim: int, modalities: Sequence[str], combine: str):
        super().__init__()
        if combine not in ("mean", "product", "learned"):
            raise ValueError(f"late fusion: unknown combine {combine!r} (mean, product or learned)")
        self.streams = tuple(sorted(modalities))
        self.combine_rule = combine
        self.learns_combination = combine == "learned"
        self.mlps = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(dim), mlp(dim)) for m in self.streams})
        if self.learns_combination:
            self.weight_logits = nn.Parameter(torch.zeros(len(self.streams)))  # (M,): uniform at start

    def forward(self, outputs: dict[str, EncoderOutput], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> {m: (B, D)} for every modality m, in sorted order."""
        streams = {}
        for m in self.streams:
            x = outputs[m].pooled  # (B, D)
            streams[m] = torch.where(present[m][:, None], x + self.mlps[m](x), 0.0)
        return streams

    def combine(self, log_probs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        """log_probs {m: (B, C)} normalised log-probabilities -> (B, C) log-scores of the decision."""
        lp = torch.stack([log_probs[m] for m in self.streams], 1)  # (B, M, C)
        keep = torch.stack([present[m] for m in self.streams], 1)  # (B, M)
        if self.combine_rule == "mean":
            # logsumexp over present streams = log sum p_m; log_softmax divides by |P| (each p_m sums to 1).
            z = torch.where(keep[..., None], lp, torch.finfo(lp.dtype).min).logsumexp(1)  # (B, C)
        elif self.combine_rule == "product":
            z = torch.where(keep[..., None], lp, 0.0).sum(1)  # (B, C)
        else:
            w = masked_softmax(self.weight_logits.expand(keep.shape), keep)  # (B, M)
            z = (w[..., None] * torch.where(keep[..., None], lp, 0.0)).sum(1)  # (B, C)
        return F.log_softmax(z, -1)
