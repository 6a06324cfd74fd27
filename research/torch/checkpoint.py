"""Checkpoints as one safetensors file: every tensor, plus a JSON meta in its header. Loading never unpickles.

The optimiser state dict is split into its tensors (`optim/<param id>/<name>`) and its plain values, so
`load` can rebuild it exactly; RNG states travel as uint8 tensors so a resumed run draws the same
dropout masks and augmentations as an uninterrupted one. Writing and finding a good file (atomic
publication, the previous checkpoint kept, a content hash) is research/checkpoint_files.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from research.checkpoint_files import CheckpointError, content_hash, publish, readable


def save(
    path: Path, model_state: dict, meta: dict[str, Any], optim_state: dict | None = None, scheduler=None, ema=None
) -> None:
    """Write `path` (.safetensors) atomically, keeping the checkpoint it replaces (checkpoint_files.py).

    `model_state` / `optim_state` are `state_dict()`s (distributed.full_state under sharded centres); with an
    optimizer state the scheduler's and the torch RNG states are saved too (a `last` to resume from), and
    `ema`, the weight average's state dict (optim.ema), under `ema/`."""
    # clone(): safetensors refuses tensors that share storage (tied weights).
    tensors = {f"model/{k}": v.detach().clone() for k, v in model_state.items()}
    tensors |= {f"ema/{k}": v.detach().clone() for k, v in (ema or {}).items()}
    extra: dict[str, Any] = {"meta": meta}
    if optim_state is not None:
        plain_state = {}
        for pid, slots in optim_state["state"].items():
            plain_state[str(pid)] = {}
            for name, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"optim/{pid}/{name}"] = value.detach().contiguous()
                else:
                    plain_state[str(pid)][name] = value
        extra["optim"] = {"state": plain_state, "param_groups": optim_state["param_groups"]}
        extra["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
    header = {"extra": json.dumps(extra), "sha256": content_hash(_bytes(tensors))}
    publish(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load(path: Path, model: torch.nn.Module, optimizer=None, scheduler=None, own=None, ema=None) -> dict[str, Any]:
    """Restore what `save` wrote into the given objects (`ema`: the weight average's model); return the meta
    dict. Falls back to the previous checkpoint when `path` is missing, truncated or corrupt (CheckpointError
    when neither is good).

    `own(model_state, optim_state) -> (model_state, optim_state)` picks this rank's part of the saved
    states (distributed.own_state: the blocks of sharded centres)."""
    tensors, extra = readable(path, _read)
    model_state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    if ema is not None:
        ema_state = {k.removeprefix("ema/"): v for k, v in tensors.items() if k.startswith("ema/")}
        ema.load_state_dict(own(ema_state, None)[0] if own is not None else ema_state)
    optim_state = None
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for pid, slots in extra["optim"]["state"].items():
            state[int(pid)] = dict(slots)
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                state.setdefault(int(pid), {})[name] = value
        optim_state = {"state": state, "param_groups": extra["optim"]["param_groups"]}
    if own is not None:
        model_state, optim_state = own(model_state, optim_state)
    model.load_state_dict(model_state)
    if optimizer is not None:
        optimizer.load_state_dict(optim_state)
        if scheduler is not None:
            scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng/cuda"])
    return extra["meta"]


def read_meta(path: Path) -> dict[str, Any]:
    """The meta dict of a checkpoint (of the previous one when `path` is unreadable)."""
    return readable(path, _read)[1]["meta"]


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, extra) of one file; CheckpointError when its content does not match its header's hash."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if content_hash(_bytes(tensors)) != header["sha256"]:
        raise CheckpointError(f"{path}: content does not match its sha256 (corrupt file)")
    return tensors, json.loads(header["extra"])


def _bytes(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {
        k: v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for k, v in tensors.items()
    }
