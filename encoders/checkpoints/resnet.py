"""torchvision's published ResNets (resnet18-f37072fd.pth, resnet50-11ad3fa6.pth, ...) -> `Resnet.backbone`'s
state dict: the same keys without the ImageNet classifier `fc`, which the encoder replaces by its own projection."""

from __future__ import annotations

import numpy as np

CLASSIFIER = ("fc.weight", "fc.bias")


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The published state dict -> the backbone's, and notes. `shapes` (the backbone's keys and shapes) is not
    needed: the loader checks them."""
    dropped = [key for key in CLASSIFIER if key in state]
    notes = [f"dropped the ImageNet classifier {', '.join(dropped)}"] if dropped else []
    return {key: value for key, value in state.items() if key not in CLASSIFIER}, notes
