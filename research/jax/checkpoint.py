"""Checkpoints as one safetensors file: every array of the train state, plus a JSON meta in its header.
Loading never unpickles and never executes code.

A train state is a pytree ({"params", "variables"[, "optim"]}); each leaf is stored under its pytree path
(`jax.tree_util.keystr`) and `load` fills a freshly built template of the same structure, so a missing
key or a wrong shape is an error, not a silent partial load. No RNG state is stored: dropout and
SpecAugment keys are a function of (seed, step) and batches of (seed, epoch), so the state, the epoch and,
mid-epoch, the step, the pipeline's iterator state and the epoch's loss sum (all in the meta) are all an
exact resume needs. Writing and finding a good file (atomic publication, the previous
checkpoint kept, a content hash) is research/checkpoint_files.py, shared with the torch trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from safetensors import safe_open
from safetensors.numpy import save_file

from research.checkpoint_files import CheckpointError, content_hash, publish, readable
from research.tracking import is_writer


def save(path: Path, state: Any, meta: dict[str, Any]) -> None:
    """Write `path` atomically, keeping the checkpoint it replaces; only process 0 writes (multi-host)."""
    arrays = {jax.tree_util.keystr(p): host(leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
    if not is_writer(jax.process_index()):
        return
    header = {"extra": json.dumps({"meta": meta}), "sha256": content_hash(_bytes(arrays))}
    publish(path, lambda tmp: save_file(arrays, str(tmp), metadata=header))


def load(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """(state shaped like `template` holding the stored arrays, meta). Only the template's keys are read, so
    a model-only template loads from a full checkpoint. Falls back to the previous checkpoint when `path`
    is missing, truncated or corrupt (CheckpointError when neither is good)."""
    arrays, extra = readable(path, _read)
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for p, like in paths:
        key = jax.tree_util.keystr(p)
        if key not in arrays:
            raise KeyError(f"{path} holds no array {key}: it was written for another model")
        if arrays[key].shape != like.shape or arrays[key].dtype != like.dtype:
            raise ValueError(f"{path}: {key} is {arrays[key].dtype}{arrays[key].shape}, not {like.dtype}{like.shape}")
        leaves.append(arrays[key])
    return jax.tree_util.tree_unflatten(treedef, leaves), extra["meta"]


def read_meta(path: Path) -> dict[str, Any]:
    """The meta dict of a checkpoint (of the previous one when `path` is unreadable)."""
    return readable(path, _read)[1]["meta"]


def host(leaf: Any) -> np.ndarray:
    """An array's whole value on this host: a sharded one (the class centres with loss.shard_centres) is
    gathered from its devices, and from the other processes when they hold some of it (every process calls)."""
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
        return np.asarray(leaf)
    if leaf.is_fully_replicated:
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, extra) of one file; CheckpointError when its content does not match its header's hash."""
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    if content_hash(_bytes(arrays)) != header["sha256"]:
        raise CheckpointError(f"{path}: content does not match its sha256 (corrupt file)")
    return arrays, json.loads(header["extra"])


def _bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v).tobytes() for k, v in arrays.items()}
