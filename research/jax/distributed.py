"""Data parallel training over a device mesh: joining a multi-host run, the (data, model) mesh of every
visible device, and laying pytrees out on it; the twin of research/torch/distributed.py's process group.

Every process holds the whole dataset and walks the same batch order; a global batch is laid over the
mesh's "data" axis (research/jax/predict.py to_device) and the state replicated, so XLA inserts the
gradient all-reduce. Only process 0 writes (record, checkpoints, W&B): the rule of research/tracking.py.

With loss.shard_centres the heads' class centres are split along the "model" axis: research/jax/sharding.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from research.config import Config
from research.tracking import Silent, Tracker, process_tracker


def init() -> None:
    """Join a multi-host run when JAX_COORDINATOR_ADDRESS (host:port of process 0) is set (docs/training.md):
    JAX_NUM_PROCESSES and JAX_PROCESS_ID name the process; on TPU pods and SLURM jax detects them."""
    if "JAX_COORDINATOR_ADDRESS" in os.environ and not jax.distributed.is_initialized():
        n, pid = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(num_processes=int(n) if n else None, process_id=int(pid) if pid else None)


def make_mesh(model: int = 1) -> Mesh:
    """A (data, model) mesh of every visible device (of every process): `model` devices along "model" (the
    axis the sharded class centres are split on, loss.shard_centres), the rest along "data"."""
    devices = np.array(jax.devices())
    if devices.size % model:
        raise ValueError(f"{devices.size} devices do not split into groups of {model} along the model axis")
    return Mesh(devices.reshape(devices.size // model, model), ("data", "model"))


def place(tree, shardings):
    """Every leaf of a pytree put on the devices as its NamedSharding in `shardings` (a pytree like `tree`)."""

    def put(x, sharding):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # typed keys travel as their key data
            return jax.random.wrap_key_data(put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
        value = np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) and not x.is_fully_addressable else x)
        return jax.make_array_from_callback(value.shape, sharding, lambda i: value[i])

    return jax.tree.map(put, tree, shardings)


def main_tracker(cfg: Config, run_dir: Path, name: str) -> Tracker | Silent:
    """research/tracking.py's tracker of this process (process 0 tracks, the others are Silent)."""
    return process_tracker(jax.process_index(), cfg, run_dir, name)
