"""timm's published MobileViT files -> the state dict of encoders/{torch,jax}/mobilevit.py's `backbone`, in NumPy.

timm's files (e.g. mobilevit_s.cvnets_in1k) hold the ImageNet classifier head.fc.weight, head.fc.bias, which the
backbone (built with num_classes=0) has not; everything else loads as it is.
"""

from __future__ import annotations

import numpy as np

HEAD = ("head.fc.weight", "head.fc.bias")  # the ImageNet classifier


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """A timm MobileViT state dict -> one without the classifier the backbone lacks, and notes."""
    head = [key for key in HEAD if key in state and key not in shapes]
    if not head:
        return dict(state), []
    return {k: v for k, v in state.items() if k not in head}, [f"dropped the ImageNet classifier {', '.join(head)}"]
