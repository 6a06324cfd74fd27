"""Published checkpoints -> the state dict of an encoder's `backbone`, framework-free (NumPy only).

`encoders/checkpoints/<module>.py` holds the adapter of the backbone family that `encoders/{torch,jax}/<module>.py`
implements: `adapt(state, shapes) -> (state, notes)` strips wrapper prefixes, drops an ImageNet classifier, resamples
position embeddings or renames another implementation's keys, and says what it did in `notes`. A family without an
adapter file takes the published state dict as it is.
"""

from __future__ import annotations

import importlib

import numpy as np


def adapt(
    module: str, state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The published state dict of a `module` backbone -> the state dict of a backbone whose keys have `shapes`
    (torch layout), and notes for the user."""
    try:
        family = importlib.import_module(f"encoders.checkpoints.{module}")
    except ModuleNotFoundError as err:
        if err.name != f"encoders.checkpoints.{module}":
            raise
        return state, []
    return family.adapt(state, shapes)
