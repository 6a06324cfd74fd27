"""Published backbone weights from a file on disk (`model.face_weights`, `model.voice_weights`), framework-free.

The backend reads the file (research/{torch,jax}/weights.py: a pickled .pth / .pt / .ckpt is torch's format,
read with `torch.load(weights_only=True)` in either backend, never unpickled freely), the backbone family's
adapter (encoders/checkpoints/) maps it onto the backbone's keys, and `published_state` checks it strictly
against the backbone: a missing or unexpected key or a shape mismatch is a one-line error naming the key and
the file. Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from encoders import checkpoints
from research.checkpoint_files import CheckpointError
from research.config import BACKBONES, Config

Shapes = dict[str, tuple[int, ...]]


def published_state(path: Path, module: str, shapes: Shapes, read: Callable) -> tuple[dict[str, np.ndarray], list]:
    """The state dict of a `module` backbone with `shapes` (torch layout) from the file at `path`, and notes."""
    try:
        raw = read(path)
    except Exception as err:  # any reader's failure: the file is not a checkpoint it can read
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first})") from None
    state, notes = checkpoints.adapt(module, raw, shapes)
    untracked = [k for k in shapes if k not in state and k.endswith("num_batches_tracked")]
    if untracked:  # BatchNorm's step counter, which some published files leave out; unused in eval and training
        state = {**state, **{k: np.zeros((), np.int64) for k in untracked}}
        notes = [*notes, f"set {len(untracked)} BatchNorm num_batches_tracked counters the file lacks to 0"]
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    if missing:
        raise CheckpointError(f"{path}: no weight for {missing[0]} of the {module} backbone{_more(missing)}")
    if unexpected:
        raise CheckpointError(f"{path}: {unexpected[0]} is not a weight of the {module} backbone{_more(unexpected)}")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != tuple(shape):
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(state[key].shape)} where the {module} backbone has {tuple(shape)}"
            )
    return state, notes


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def load_pretrained(encoders: dict[str, Any], cfg: Config, load_backbone: Callable) -> list[str]:
    """Load model.face_weights / model.voice_weights into the backbones of `encoders` with the backend's
    `load_backbone(encoder, module, path) -> notes`; the notes, each naming its file."""
    notes = []
    for modality in ("face", "voice"):
        path = getattr(cfg.model, f"{modality}_weights")
        if path and modality in encoders:
            module = BACKBONES[getattr(cfg.model, modality)]
            notes += [f"{path}: {note}" for note in load_backbone(encoders[modality], module, Path(path))]
    return notes
