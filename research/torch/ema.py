"""An exponential moving average of the weights (optim.ema): after every optimizer step, ema = decay * ema + (1 -
decay) * weights. The copy is what validation, the best checkpoint and the end-of-run report use; the `last`
checkpoint holds it beside the trained weights, so a resume continues it exactly.

Every floating entry of the state dict is averaged, BatchNorm running statistics included (timm's ModelEmaV3
default, also ModelEmaV2): the running statistics are themselves a moving average over recent weights, so averaging
them follows the averaged weights as closely as the statistics of the last weights do, and a checkpoint's copy
needs no recomputation pass. Integer entries (BatchNorm's num_batches_tracked, step counters) are copied. The
update is written as ema + (1 - decay) (weights - ema) (torch's lerp), so a weight that does not change (a frozen
encoder's) stays exactly equal in the copy. No warm-up of the decay: the copy starts at the initial weights, as
timm's and big_vision's do. The jax twin (research/jax/ema.py) averages the same entries in the same order of
operations.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make(model: nn.Module, decay: float) -> nn.Module | None:
    """The average's copy of `model` (None when optim.ema is 0): never trained, always in eval mode."""
    if decay <= 0:
        return None
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model over the floating state-dict entries; integers copied."""
    weights = model.state_dict()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            value.lerp_(weights[key], 1 - decay)  # value + (1 - decay) (weights - value)
        else:
            value.copy_(weights[key])


def evaluated(model: nn.Module, ema: nn.Module | None) -> nn.Module:
    """The weights that validation, the best checkpoint and the report use: the average when there is one
    (optim.ema), else the trained model."""
    return model if ema is None else ema
