"""Published backbone weights in torch: read a checkpoint file, load it into an encoder's backbone
(research/weights.py checks it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn

from research.weights import published_state

WRAPPERS = ("state_dict", "model")  # training checkpoints that hold the weights under one of these keys


def read(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint file as {key: array}: safetensors, or a torch pickle read with weights_only=True (which
    refuses any object but tensors and plain containers)."""
    if path.suffix == ".safetensors":
        tensors = safetensors.torch.load_file(path)
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        while isinstance(tensors, dict) and len(tensors) == 1 and next(iter(tensors)) in WRAPPERS:
            tensors = next(iter(tensors.values()))
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError("it holds no state dict of tensors")
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in tensors.items()}


def load_backbone(encoder: nn.Module, module: str, path: Path) -> list[str]:
    """Load the published file at `path` into `encoder.backbone` (strictly); what the adapter did, as notes."""
    shapes = {k: tuple(v.shape) for k, v in encoder.backbone.state_dict().items()}
    state, notes = published_state(path, module, shapes, read)
    encoder.backbone.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return notes
