"""torchvision's published VGG16 (vgg16-397923af.pth) -> `Vgg.backbone`'s state dict: the same keys without the
ImageNet classifier's last layer `classifier.6` (fc8, 4096 -> 1000); fc6 and fc7 stay, they make the embedding."""

from __future__ import annotations

import numpy as np

CLASSIFIER = ("classifier.6.weight", "classifier.6.bias")


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The published state dict -> the backbone's, and notes. `shapes` (the backbone's keys and shapes) is not
    needed: the loader checks them."""
    dropped = [key for key in CLASSIFIER if key in state]
    notes = [f"dropped the ImageNet classifier {', '.join(dropped)}"] if dropped else []
    return {key: value for key, value in state.items() if key not in CLASSIFIER}, notes
