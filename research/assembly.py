"""Config -> constructor keywords of encoders, fusion modules and heads, shared by the torch and jax
model assembly so one config builds either backend (docs/architecture.md lists the keywords)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from research.config import BACKBONES, PAIR_LOSSES, SPHEREFACE2_MARGINS, Config
from research.config_parse import from_dict


def encoder_kwargs(cfg: Config, modality: str, vocab_size: int) -> tuple[str, dict[str, Any]]:
    """(encoder module, keywords) for one modality: a published backbone's module takes its name as `variant`."""
    m, d = cfg.model, cfg.data
    transformer = {"layers": m.layers, "heads": m.heads, "dropout": m.dropout}
    voice = {"sample_rate": d.sample_rate, "frontend": m.frontend, "spec_augment": m.spec_augment}
    name = getattr(m, modality)
    if name in BACKBONES:
        sizes = {"image_size": d.image_size} if modality == "face" else voice
        return BACKBONES[name], {"variant": name, "dim": m.dim, **sizes}
    kwargs: dict[str, Any] = {
        "face_cnn": {"image_size": d.image_size},
        "face_vit": {"image_size": d.image_size, **transformer},
        "voice_ecapa": voice,
        "voice_vit": {**voice, **transformer},
        "text_tiny": {"vocab_size": vocab_size, "max_len": d.text_len, **transformer},
        "text_hf": {"path": m.text_path, "freeze": m.freeze_text},
    }[name]
    return name, {"dim": m.dim, **kwargs}


def fusion_kwargs(cfg: Config) -> dict[str, Any]:
    m = cfg.model
    modalities = tuple(sorted(m.modalities))
    transformer = {"layers": m.fusion_layers, "heads": m.heads, "dropout": m.dropout}
    kwargs: dict[str, Any] = {
        "early": transformer,
        "cross_attn": transformer,
        "stack": {"tokens": m.stack_tokens},
        "gated": {},
        "late": {"combine": m.combine},
        "concat": {"combine_features": m.combine_features},
        "bottleneck": {
            **transformer,
            "bottleneck_tokens": m.bottleneck_tokens,
            "fusion_from_layer": m.fusion_from_layer,
        },
    }[m.fusion]
    return {"dim": m.dim, "modalities": modalities, **kwargs}


def head_kwargs(cfg: Config, classes: int, name: str | None = None) -> dict[str, Any]:
    """Keywords of the classification head `name` (default cfg.loss.name; class weights are added by the caller)."""
    name = name or cfg.loss.name
    hyper = loss_kwargs(cfg, name)
    if name == "sphereface2" and hyper["margin"] is None:  # a Config not passed through apply_overrides
        hyper["margin"] = SPHEREFACE2_MARGINS[hyper["margin_type"]]
    return {"dim": cfg.model.dim, "classes": classes, "label_smoothing": cfg.loss.label_smoothing, **hyper}


def loss_kwargs(cfg: Config, name: str) -> dict[str, Any]:
    """The hyper-parameters of loss `name` (its config section; none for softmax): all a pair loss takes."""
    section = getattr(cfg.loss, name, None)
    return dataclasses.asdict(section) if dataclasses.is_dataclass(section) else {}


def heads_of(cfg: Config) -> tuple[str, str | None]:
    """(what the per-stream heads are, the matching loss): heads "classes" (class centres, log-probabilities),
    "pairs" (a pair loss on the stream embeddings) or "none"; the matching loss is "cross_modal" in a match
    model (the face and voice streams against each other), whose heads are softmax identity heads when
    loss.identity_weight > 0."""
    if cfg.model.task == "match":
        return ("classes" if cfg.loss.identity_weight > 0 else "none"), "cross_modal"
    return ("pairs" if cfg.loss.name in PAIR_LOSSES else "classes"), None


def encoder_sources(cfg: Config) -> list[tuple[Path, Config, list[str]]]:
    """model.init_from: (run directory, its config, the modalities whose encoders it gives) per listed run.
    A run gives the encoders of the modalities it shares with this model; a modality given by two runs, or a
    run that shares none, is an error. The source config's own init_from is cleared (its checkpoint holds
    the weights)."""
    sources, taken = [], {}
    for folder in cfg.model.init_from:
        run = Path(folder)
        source = from_dict(json.loads((run / "record.json").read_text())["config"])
        source.model.init_from, source.model.freeze_encoders = (), False
        shared = sorted(set(source.model.modalities) & set(cfg.model.modalities))
        if not shared:
            raise ValueError(f"model.init_from: run {run} has no encoder of {', '.join(cfg.model.modalities)}")
        for m in shared:
            if m in taken:
                raise ValueError(f"model.init_from: the {m} encoder is in both {taken[m]} and {run}")
            taken[m] = run
        sources.append((run, source, shared))
    return sources


# Fields that do not change which model a config builds: how it is initialised and trained (model.init_model).
NOT_ARCHITECTURE = {"face_weights", "voice_weights", "text_path", "freeze_text", "dropout", "spec_augment"}
NOT_ARCHITECTURE |= {"init_from", "freeze_encoders", "init_model"}


def model_source(cfg: Config) -> Path:
    """model.init_model: the checkpoint of that run whose whole model starts this one, its averaged one when it
    has one (eval.average_last), else its best. Its config must build the same model: a field of model.* (but
    initialisation and training ones), the loss head or the data fields that shape the model that differs is a
    one-line error naming it."""
    run = Path(cfg.model.init_model)
    source = from_dict(json.loads((run / "record.json").read_text())["config"])
    fields = [(f"model.{f.name}", "model", f.name) for f in dataclasses.fields(source.model)]
    fields = [field for field in fields if field[2] not in NOT_ARCHITECTURE] + [("loss.name", "loss", "name")]
    fields += [(f"data.{f}", "data", f) for f in ("target", "image_size", "sample_rate", "text_len", "tokenizer")]
    fields += [("data.speed_perturb_labels", "data", "speed_perturb_labels")]  # 3 C classes
    differ = [
        f"{key}={getattr(getattr(source, part), name)!r} there, {getattr(getattr(cfg, part), name)!r} here"
        for key, part, name in fields
        if getattr(getattr(source, part), name) != getattr(getattr(cfg, part), name)
    ]
    if differ:
        raise ValueError(f"model.init_model: run {run} built another model: {'; '.join(differ)}")
    averaged = run / "averaged.safetensors"
    return averaged if averaged.exists() else run / "best.safetensors"
