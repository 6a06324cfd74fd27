"""Model assembly: encoders -> fusion -> one head per fusion stream, trained end to end."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import encoders
import fusion
import losses
from losses.torch.contrastive import Contrastive
from research.assembly import (
    encoder_kwargs,
    encoder_sources,
    fusion_kwargs,
    head_kwargs,
    heads_of,
    loss_kwargs,
    model_source,
)
from research.checkpoint_files import one_line
from research.config import Config
from research.data.loader import load
from research.torch import checkpoint


class FusionModel(nn.Module):
    """`model(batch) -> {"loss", "log_probs" (B, C), "embedding" (B, E), "streams": {name: (B, D)}}`.

    The loss is the mean over fusion streams of each stream's head loss on the samples where the stream is
    present and the label is known (label -1 = unseen class, e.g. an unseen identity on the open split),
    over the streams that have such a sample. Every quantity is a per-sample masked computation on the
    whole batch (the heads' `keep` mask), with no data-dependent shape and no branch on tensor values,
    so the jax twin (research/jax/model.py) reads the same and compiles once.
    When the fusion learns how to combine its streams (late fusion, learned weights), the cross-entropy of
    the combined decision is added on detached stream scores, so only the weights learn from it and the
    modalities still never interact before the decision.

    `kind` says what the heads are (research/assembly.py heads_of): "classes" (class centres: the output has
    log_probs), "pairs" (a pair loss on each stream's embeddings: no classifier, no log_probs) or "none". A
    `matcher` (cross-modal loss, model.task = match) adds the loss of the face stream against the voice
    stream on the samples that have both; the head losses then count `identity_weight` times.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: nn.Module,
        heads: dict[str, nn.Module],
        kind: str = "classes",
        matcher: nn.Module | None = None,
        identity_weight: float = 1.0,
    ):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.heads = nn.ModuleDict(heads)
        self.kind, self.matcher, self.identity_weight = kind, matcher, identity_weight
        self.frozen_encoders = False  # init_encoders sets it (model.freeze_encoders)

    def train(self, mode: bool = True) -> FusionModel:
        """Frozen encoders stay in eval mode: their BatchNorm statistics fixed and no dropout."""
        super().train(mode)
        if self.frozen_encoders:
            self.encoders.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        streams, stream_present = self.fused(batch)  # {name: (B, D)}, {name: (B,) bool}
        labels = batch["target"]  # (B,)
        known = labels >= 0  # (B,)
        safe_labels = torch.where(known, labels, 0)  # (B,): any valid class where the label is unknown
        result = {"embedding": embedding(streams, stream_present), "streams": streams}
        loss = torch.zeros((), device=labels.device)
        if self.kind != "none":
            losses, used, log_probs = [], [], {}
            for s in self.fusion.streams:
                keep = stream_present[s] & known  # (B,)
                losses.append(self.head_loss(s, streams[s], safe_labels, keep))
                used.append(keep.any())
                if self.kind == "classes":
                    log_probs[s] = F.log_softmax(self.heads[s].scores(streams[s]).float(), dim=-1)  # (B, C)
            used = torch.stack(used)  # (S,): streams with at least one sample to learn from
            loss = torch.where(used, torch.stack(losses), 0.0).sum() / used.sum().clamp_min(1)
            if self.kind == "classes":
                result["log_probs"] = self.fusion.combine(log_probs, stream_present)  # (B, C)
                if self.fusion.learns_combination:
                    detached = {s: lp.detach() for s, lp in log_probs.items()}
                    detached = self.fusion.combine(detached, stream_present)
                    nll = -detached.gather(1, safe_labels[:, None])[:, 0]  # (B,)
                    loss = loss + torch.where(known, nll, 0.0).sum() / known.sum().clamp_min(1)
        if self.matcher is not None:
            both = stream_present["face"] & stream_present["voice"] & known  # (B,)
            matching = self.matcher(streams["face"], streams["voice"], safe_labels, keep=both)[0]
            loss = matching + self.identity_weight * loss
        return {"loss": loss, **result}

    def fused(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        """The model before its heads: the fusion streams {name: (B, D)} and where each is present {name: (B,) bool}
        (a modality's stream where it is, a fused stream where any modality is; research/{torch,jax}/export.py)."""
        present = {m: batch[f"{m}_present"] for m in sorted(self.encoders)}  # (B,) bool each
        outputs = {m: self.encoders[m](batch) for m in sorted(self.encoders)}
        streams = self.fusion(outputs, present)  # {name: (B, D)}
        return streams, {s: present[s] if s in present else torch.stack(list(present.values())).any(0) for s in streams}

    def head_loss(self, stream: str, x: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """One stream's head loss: a class head's, the contrastive loss on every pair of the batch, or the
        triplet loss with in-batch mining."""
        head = self.heads[stream]
        if isinstance(head, Contrastive):
            return head.in_batch(x, labels, keep=keep)[0]
        return head(x, labels, keep=keep)[0]


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
    kind, matching = heads_of(cfg)
    head = "softmax" if matching else cfg.loss.name  # a match model's identity heads are softmax heads
    heads = {}
    if kind == "classes":
        hyper = head_kwargs(cfg, classes, head)
        heads = {s: losses.build(backend, head, class_weights=class_weights, **hyper) for s in fuse.streams}
    elif kind == "pairs":
        heads = {s: losses.build(backend, head, **loss_kwargs(cfg, head)) for s in fuse.streams}
    matcher = losses.build(backend, matching, **loss_kwargs(cfg, matching)) if matching else None
    model = FusionModel(encs, fuse, heads, kind, matcher, cfg.loss.identity_weight)
    if cfg.model.init_from or cfg.model.freeze_encoders:
        init_encoders(model, cfg)
    return model


def init_encoders(model: FusionModel, cfg: Config) -> None:
    """model.init_from: the encoders of each listed run's best checkpoint (research/assembly.py
    encoder_sources); with model.freeze_encoders they are not trained: no gradient, always in eval mode."""
    for run, source_cfg, modalities in encoder_sources(cfg):
        splits = load(source_cfg.data)
        source = build_model(source_cfg, len(splits.classes[source_cfg.data.target]), splits.vocab_size, None)
        load_weights(source, run / "best.safetensors")
        for m in modalities:
            model.encoders[m].load_state_dict(source.encoders[m].state_dict())
    if cfg.model.freeze_encoders:
        model.encoders.requires_grad_(False)
        model.frozen_encoders = True
        model.train(model.training)


def init_model(model: FusionModel, cfg: Config) -> None:
    """model.init_model: every weight (encoders, fusion, heads) from that run's averaged or best checkpoint
    (research/assembly.py model_source), strictly; a checkpoint that does not fit is a one-line error. The trainer
    calls it as training starts (not build_model: a restored run's own checkpoint needs no source run)."""
    path = model_source(cfg)
    try:
        load_weights(model, path)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"model.init_model: {path} does not fit this model: {one_line(err)}") from None


def load_weights(model: FusionModel, path: Path) -> dict:
    """Load a checkpoint's weights into `model` (strict: research/torch/checkpoint.py); its meta."""
    return checkpoint.load(path, model)


def parameter_report(model: FusionModel) -> dict[str, int]:
    """Trainable parameters per encoder, fusion and heads, and in total."""
    count = lambda module: sum(p.numel() for p in module.parameters() if p.requires_grad)  # noqa: E731
    report = {f"params/{m}": count(enc) for m, enc in model.encoders.items()}
    report["params/fusion"] = count(model.fusion)
    report["params/heads"] = count(model.heads)
    report["params"] = count(model)
    return report
