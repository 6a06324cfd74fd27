"""The pieces torch gives the framework-free code of research/ (research/backend.py): where the model runs,
the model with a checkpoint's weights, predictions, FLOP counting and one attacked batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from research.config import Config
from research.data.loader import SampleSet, Splits
from research.torch.attack import adversarial
from research.torch.model import FusionModel, build_model, init_model, load_weights, parameter_report
from research.torch.predict import pick_device, predict, to_device
from research.torch.weights import load_backbone
from research.training import class_weights
from research.weights import load_pretrained

__all__ = [
    "adversarial", "flops_per_sample", "load_model", "new_model", "parameter_report", "place", "predict", "torch_state",
    "with_torch_state",
]  # fmt: skip


def place(requested: str) -> torch.device:
    """Where the model runs: with "auto" a GPU when there is one, else the CPU; or the torch device named."""
    return pick_device(requested)


def load_model(cfg: Config, classes: int, vocab_size: int, path: Path, device: torch.device) -> FusionModel:
    """The model `cfg` describes, with the weights of the checkpoint at `path`, on `device`, in eval mode."""
    model = build_model(cfg, classes, vocab_size, None).to(device)
    load_weights(model, path)
    model.eval()
    return model


def torch_state(model: FusionModel) -> dict[str, np.ndarray]:
    """The model's weights under torch's names, as NumPy: what both backends read and write (encoders/jax/convert.py),
    so that a run of one backend is restored in the other (research/restore.py)."""
    return {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}


def with_torch_state(
    cfg: Config, classes: int, vocab_size: int, state: dict[str, np.ndarray], device: torch.device
) -> FusionModel:
    """The model `cfg` describes, holding `state` (a `torch_state` of either backend, strictly), on `device`, in
    eval mode."""
    model = build_model(cfg, classes, vocab_size, None)
    model.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()})
    return model.to(device).eval()


def new_model(cfg: Config, splits: Splits) -> tuple[FusionModel, list[str]]:
    """The model `cfg` describes as training starts it, on the host: class weights, published backbone weights and
    `model.init_model` loaded; the notes of the weight files."""
    classes = len(splits.classes[cfg.data.target])
    weights = class_weights(cfg, splits.train.labels("target"), classes)
    model = build_model(cfg, classes, splits.vocab_size, None if weights is None else torch.from_numpy(weights))
    notes = load_pretrained(model.encoders, cfg, load_backbone)
    if cfg.model.init_model:  # the whole model of an earlier run (a second stage)
        init_model(model, cfg)
    return model, notes


def flops_per_sample(model: FusionModel, data: SampleSet, cfg: Config, device: torch.device) -> float:
    """Forward FLOPs of one batch (torch's FLOP counter: matmuls and convolutions) divided by its size."""
    model.to(device).eval()
    batch = next(data.batches(cfg.data.batch_size, shuffle=False, seed=0, epoch=0, train=False))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(to_device(batch, device))
    return counter.get_total_flops() / len(batch["target"])
