"""insightface's published iResNet backbones (arcface_torch backbone.pth) -> `Iresnet.backbone`'s state dict.

The files hold IResNet's own state dict (insightface saves `backbone.module.state_dict()`), whose names
`encoders/{torch,jax}/iresnet.py` keep, so nothing is renamed or dropped. A state dict saved from a
DistributedDataParallel wrapper instead carries a `module.` prefix on every key: it is stripped, with a note.
"""

from __future__ import annotations

import numpy as np

PREFIX = "module."


def adapt(state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The published state dict -> the backbone's (the same keys), and notes. `shapes` (the backbone's keys and
    shapes) is not needed: the loader checks them."""
    if state and all(key.startswith(PREFIX) for key in state):
        return {key[len(PREFIX) :]: value for key, value in state.items()}, [
            f"stripped the DistributedDataParallel prefix {PREFIX!r} from every key"
        ]
    return state, []
