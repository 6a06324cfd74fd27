"""The pieces jax gives the framework-free code of research/ (research/backend.py): where the model runs,
the model with a checkpoint's weights, predictions, FLOP counting and one attacked batch."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from encoders.jax.convert import to_nnx, to_torch
from research.config import Config
from research.data.loader import SampleSet, Splits
from research.jax.attack import adversarial
from research.jax.distributed import make_mesh
from research.jax.model import FusionModel, build_model, init_model, load_weights, parameter_report, seeded_rngs
from research.jax.predict import forward, pad, predict, replicate, to_device
from research.jax.weights import load_backbone
from research.training import class_weights
from research.weights import load_pretrained

__all__ = [
    "adversarial", "flops_per_sample", "load_model", "new_model", "parameter_report", "place", "predict", "torch_state",
    "with_torch_state",
]  # fmt: skip


def place(requested: str) -> Mesh:
    """Where the model runs: with "auto" a data-parallel mesh of every visible device, or one of a platform's
    devices ("cpu", "cuda" or "gpu", "tpu")."""
    if requested == "auto":
        return make_mesh()
    devices = jax.devices({"cuda": "gpu"}.get(requested, requested))
    return Mesh(np.array(devices).reshape(-1, 1), ("data", "model"))


def load_model(cfg: Config, classes: int, vocab_size: int, path: Path, device: Mesh) -> FusionModel:
    """The model `cfg` describes, with the weights of the checkpoint at `path`, in eval mode (its arrays are
    placed on the mesh `device` when predict runs)."""
    model = build_model(cfg, classes, vocab_size, None, rngs=seeded_rngs(cfg))
    load_weights(model, path)
    model.eval()
    return model


def torch_state(model: FusionModel) -> dict[str, np.ndarray]:
    """The model's weights under torch's names, as NumPy: what both backends read and write (encoders/jax/convert.py),
    so that a run of one backend is restored in the other (research/restore.py)."""
    return to_torch(model)


def with_torch_state(
    cfg: Config, classes: int, vocab_size: int, state: dict[str, np.ndarray], device: Mesh
) -> FusionModel:
    """The model `cfg` describes, holding `state` (a `torch_state` of either backend, strictly), in eval mode (its
    arrays are placed on the mesh `device` when predict runs)."""
    model = build_model(cfg, classes, vocab_size, None, rngs=seeded_rngs(cfg))
    to_nnx(state, model)
    model.eval()
    return model


def new_model(cfg: Config, splits: Splits) -> tuple[FusionModel, list[str]]:
    """The model `cfg` describes as training starts it, on the host: class weights, published backbone weights and
    `model.init_model` loaded; the notes of the weight files."""
    classes = len(splits.classes[cfg.data.target])
    weights = class_weights(cfg, splits.train.labels("target"), classes)
    weights = None if weights is None else jnp.asarray(weights)
    model = build_model(cfg, classes, splits.vocab_size, weights, rngs=seeded_rngs(cfg))
    notes = load_pretrained(model.encoders, cfg, load_backbone)
    if cfg.model.init_model:  # the whole model of an earlier run (a second stage)
        init_model(model, cfg)
    return model, notes


def flops_per_sample(model: FusionModel, data: SampleSet, cfg: Config, device: Mesh) -> float:
    """Forward FLOPs of one batch by XLA's cost analysis (every operation, so somewhat more than torch's
    counter, which counts matmuls and convolutions only) divided by its size."""
    model.eval()
    batch = next(data.batches(cfg.data.batch_size, shuffle=False, seed=0, epoch=0, train=False))
    graphdef, state = nnx.split(model)
    padded = to_device(pad(batch, cfg.data.batch_size), device)
    cost = forward.lower(graphdef, replicate(state, device), padded).cost_analysis()
    return float(cost["flops"]) / cfg.data.batch_size
