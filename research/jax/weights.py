"""Published backbone weights in jax: the file read as torch reads it (a published .pth is torch's pickle
format; research/torch/weights.py reads it with weights_only=True), checked by research/weights.py and loaded
into an encoder's NNX backbone through the torch <-> NNX converter."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from encoders.jax import convert
from research.torch.weights import read
from research.weights import published_state


def load_backbone(encoder: nnx.Module, module: str, path: Path) -> list[str]:
    """Load the published file at `path` into `encoder.backbone` (strictly); what the adapter did, as notes."""
    shapes = convert.torch_shapes(encoder.backbone)
    state, notes = published_state(path, module, shapes, read)
    convert.to_nnx(state, encoder.backbone)
    return notes
