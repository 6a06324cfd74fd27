"""Checkpoints as safetensors (every tensor) plus a JSON sidecar (everything else): loading never unpickles.

The optimiser state dict is split into its tensors (`optim/<param id>/<name>`) and its plain values, so
`load` can rebuild it exactly; RNG states travel as uint8 tensors so a resumed run draws the same
dropout masks and augmentations as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def save(path: Path, model: torch.nn.Module, meta: dict[str, Any], optimizer=None, scheduler=None) -> None:
    """Write `path` (.safetensors) and `path.with_suffix('.json')` atomically (temp file, then rename)."""
    # clone(): safetensors refuses tensors that share storage (tied weights).
    tensors = {f"model/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    extra: dict[str, Any] = {"meta": meta}
    if optimizer is not None:
        state = optimizer.state_dict()
        plain_state = {}
        for pid, slots in state["state"].items():
            plain_state[str(pid)] = {}
            for name, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"optim/{pid}/{name}"] = value.detach().contiguous()
                else:
                    plain_state[str(pid)][name] = value
        extra["optim"] = {"state": plain_state, "param_groups": state["param_groups"]}
        extra["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp_json = path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(extra, indent=1))
    tmp.replace(path)
    tmp_json.replace(path.with_suffix(".json"))


def load(path: Path, model: torch.nn.Module, optimizer=None, scheduler=None) -> dict[str, Any]:
    """Restore what `save` wrote into the given objects; return the meta dict."""
    tensors = load_file(str(path))
    extra = json.loads(path.with_suffix(".json").read_text())
    model_state = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(model_state)
    if optimizer is not None:
        state: dict[int, dict[str, Any]] = {}
        for pid, slots in extra["optim"]["state"].items():
            state[int(pid)] = dict(slots)
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, pid, name = key.split("/", 2)
                state.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": extra["optim"]["param_groups"]})
        if scheduler is not None:
            scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng/cuda"])
    return extra["meta"]
