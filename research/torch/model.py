"""Model assembly: encoders -> fusion -> one head per fusion stream, trained end to end."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import encoders
import fusion
import losses
from research.assembly import encoder_kwargs, fusion_kwargs, head_kwargs
from research.config import Config


class FusionModel(nn.Module):
    """`model(batch) -> {"loss", "log_probs" (B, C), "embedding" (B, E), "streams": {name: (B, D)}}`.

    The loss is the mean over fusion streams of each stream's head loss on the samples where the stream is
    present and the label is known (label -1 = unseen class, e.g. an unseen identity on the open split).
    When the fusion learns how to combine its streams (late fusion, learned weights), the cross-entropy of
    the combined decision is added on detached stream scores, so only the weights learn from it and the
    modalities still never interact before the decision.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.heads = nn.ModuleDict(heads)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        present = {m: batch[f"{m}_present"] for m in sorted(self.encoders)}  # (B,) bool each
        outputs = {m: self.encoders[m](batch) for m in sorted(self.encoders)}
        streams = self.fusion(outputs, present)  # {name: (B, D)}
        stream_present = {
            s: present[s] if s in present else torch.stack(list(present.values())).any(0) for s in streams
        }
        labels = batch["target"]  # (B,)
        losses, log_probs = [], {}
        for s in self.fusion.streams:
            keep = stream_present[s] & (labels >= 0)
            if keep.any():
                losses.append(self.heads[s](streams[s][keep], labels[keep])[0])
            log_probs[s] = F.log_softmax(self.heads[s].scores(streams[s]).float(), dim=-1)  # (B, C)
        decision = self.fusion.combine(log_probs, stream_present)  # (B, C)
        loss = torch.stack(losses).mean() if losses else decision.sum() * 0.0
        if self.fusion.learns_combination and (labels >= 0).any():
            detached = self.fusion.combine({s: lp.detach() for s, lp in log_probs.items()}, stream_present)
            loss = loss + F.nll_loss(detached[labels >= 0], labels[labels >= 0])
        return {
            "loss": loss,
            "log_probs": decision,
            "embedding": embedding(streams, stream_present),
            "streams": streams,
        }


def embedding(streams: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenated L2-normalised stream embeddings / sqrt(#streams): its cosine is the mean stream cosine."""
    parts = [F.normalize(streams[s].float(), dim=-1) * present[s][:, None] for s in sorted(streams)]
    return torch.cat(parts, dim=-1) / math.sqrt(len(parts))  # (B, n_streams * D)


def build_model(cfg: Config, classes: int, vocab_size: int, class_weights: torch.Tensor | None) -> FusionModel:
    backend = "torch"
    encs = {}
    for m in sorted(cfg.model.modalities):
        name, kwargs = encoder_kwargs(cfg, m, vocab_size)
        encs[m] = encoders.build(backend, name, **kwargs)
    fuse = fusion.build(backend, cfg.model.fusion, **fusion_kwargs(cfg))
    heads = {
        s: losses.build(backend, cfg.loss.name, class_weights=class_weights, **head_kwargs(cfg, classes))
        for s in fuse.streams
    }
    return FusionModel(encs, fuse, heads)


def parameter_report(model: FusionModel) -> dict[str, int]:
    """Trainable parameters per encoder, fusion and heads, and in total."""
    count = lambda module: sum(p.numel() for p in module.parameters() if p.requires_grad)  # noqa: E731
    report = {f"params/{m}": count(enc) for m, enc in model.encoders.items()}
    report["params/fusion"] = count(model.fusion)
    report["params/heads"] = count(model.heads)
    report["params"] = count(model)
    return report
