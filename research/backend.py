"""The seam between the framework-free code of research/ and a backend (research/torch/, research/jax/).

Each backend's backend.py gives the same few pieces, and the end-of-run report (research/report.py), the
restore of a finished run (research/restore.py) and the attack orchestration (research/robustness.py) take
that module as their `backend` argument:

    place(requested) -> device                    where the model runs: a torch device, a jax mesh
    load_model(cfg, classes, vocab_size, path, device) -> model   built from cfg, path's weights, eval mode
    torch_state(model) -> {torch name: np.ndarray}                 the weights under torch's names (either backend)
    with_torch_state(cfg, classes, vocab_size, state, device) -> model   built from cfg holding a torch_state
    new_model(cfg, splits) -> (model, notes)                      as training starts it (on the host), weights loaded
    parameter_report(model) -> {"params/face": N, ..., "params": N}   trainable parameters per part
    predict(model, data, cfg, device, drop="") -> dict            per-sample arrays of one split
    flops_per_sample(model, data, cfg, device) -> float           forward FLOPs of one batch / its size
    adversarial(model, batch, modality, attack, objective, device) -> np.ndarray   one attacked batch
"""

from __future__ import annotations

import importlib
from types import ModuleType


def load(name: str) -> ModuleType:
    """research/{name}/backend.py: the module path is the registry, as in encoders.build."""
    return importlib.import_module(f"research.{name}.backend")
