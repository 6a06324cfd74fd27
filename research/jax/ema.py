"""An exponential moving average of the weights (optim.ema), the twin of research/torch/ema.py: after every
optimizer step, ema = decay * ema + (1 - decay) * weights, inside the jitted step, over the parameters and
the floating variables (BatchNorm running statistics averaged, as in timm's ModelEmaV3; integer counters
copied). It is the train state's "ema" entry ({"params", "variables"}), so the `last` checkpoint holds it and
a resume continues it exactly; validation, the best checkpoint and the report use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def make(state: dict, decay: float) -> dict | None:
    """The average's starting copy of the state's weights (None when optim.ema is 0): new buffers, since the
    step donates the state and one buffer cannot be donated twice."""
    if decay <= 0:
        return None
    return jax.tree.map(jnp.copy, {"params": state["params"], "variables": state["variables"]})


def update(ema: dict, state: dict, decay: float) -> dict:
    """ema = decay * ema + (1 - decay) * state's weights over the floating leaves; integers copied."""

    def average(old: jax.Array, new: jax.Array) -> jax.Array:
        if not jnp.issubdtype(old.dtype, jnp.floating):
            return new
        return old + (1 - decay) * (new - old)  # torch's lerp_: a weight that does not change stays exact

    return jax.tree.map(average, ema, {"params": state["params"], "variables": state["variables"]})


def evaluated(state: dict) -> dict:
    """The weights that validation, the best checkpoint and the report use: the average when the state has one
    (optim.ema), else the trained ones; {"params", "variables"}."""
    return state["ema"] if "ema" in state else {"params": state["params"], "variables": state["variables"]}
