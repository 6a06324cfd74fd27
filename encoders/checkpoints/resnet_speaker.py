"""Published ResNet speaker files -> the state dict of encoders/{torch,jax}/resnet_speaker.py's backbone.

WeSpeaker's avg_model.pt (torch.save of the training model's state dict, without a DataParallel prefix) holds the
speaker model under the backbone's names plus the training classifier `projection.*` (ArcMargin class centres),
dropped here.
"""

from __future__ import annotations

import numpy as np


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """WeSpeaker's avg_model.pt -> the backbone's state dict, and notes (`shapes` is not needed)."""
    projection = sorted(k for k in state if k.startswith("projection."))
    notes = [f"dropped WeSpeaker's training classifier {', '.join(projection)}"] if projection else []
    return {k: v for k, v in state.items() if not k.startswith("projection.")}, notes
