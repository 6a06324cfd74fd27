"""Per-sample predictions of a model over one split, as NumPy arrays for research/evaluation.py,
and the device helpers they need: batch sharding over the mesh (research/jax/distributed.py) and the jitted
forward pass.

Every process holds the whole dataset and walks the same batch order; a global batch is laid over the
mesh's "data" axis (each device gets batch_size / devices rows) and parameters are replicated, so the
batch size means the global batch, as in torch, on any number of devices and hosts.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from research.config import Config
from research.data.loader import SampleSet
from research.jax.distributed import place
from research.jax.model import FusionModel
from research.predictions import Predictions, class_copies, dropped, eval_batches


def replicate(tree, mesh: Mesh):
    """Every leaf of a pytree replicated on all devices of the mesh, except leaves already laid out on this
    mesh: the trainer's sharded class centres stay split (the forward pass reads them where they are)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    on_mesh = lambda x: isinstance(x, jax.Array) and getattr(x.sharding, "mesh", None) == mesh  # noqa: E731
    return place(tree, jax.tree.map(lambda x: x.sharding if on_mesh(x) else replicated, tree))


def to_device(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """A global NumPy batch -> global arrays split along the batch axis over every axis of the mesh (each
    device gets batch_size / devices rows; int64 -> int32: jax runs without 64-bit types)."""
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
    if len(batch["target"]) % mesh.size:
        raise ValueError(f"batch of {len(batch['target'])} does not split over {mesh.size} devices")
    arrays = {}
    for key, value in batch.items():
        value = value.astype(np.int32) if value.dtype == np.int64 else value
        arrays[key] = jax.make_array_from_callback(value.shape, sharding, lambda i, v=value: v[i])
    return arrays


def to_numpy(tree):
    """Global arrays -> NumPy on every process (an all-gather when other hosts hold some rows)."""
    if jax.process_count() > 1:
        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


@partial(jax.jit, static_argnums=0)
def forward(graphdef: nnx.GraphDef, state: nnx.State, batch: dict[str, jax.Array]) -> dict:
    """The model in eval mode on one batch: loss, decision (models with a classifier), embedding and stream
    embeddings."""
    out = nnx.merge(graphdef, state)(batch)
    return {k: out[k] for k in ("loss", "log_probs", "embedding") if k in out} | {
        f"{s}_embedding": v for s, v in out["streams"].items()
    }


def pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Fill a short batch up to `size` rows with copies of its first row labelled -1 (unknown), so every
    batch has one shape (one compiled forward pass); eval-mode outputs are per sample and the loss skips
    label -1, so the padding changes nothing and is cut off again."""
    n = len(batch["target"])
    padded = {k: np.concatenate([v, np.repeat(v[:1], size - n, axis=0)]) for k, v in batch.items()}
    padded["target"][n:] = -1
    return padded


def predict(model: FusionModel, data: SampleSet, cfg: Config, mesh: Mesh, drop: str = "") -> dict:
    """Per-sample arrays of one split: log_probs (models with a classifier), embedding, labels, presence,
    {m}_embedding, and the loss.

    `drop` names a modality to remove at test time (its presence flags are set to False).
    Voices are whole (eval.voice_seconds = 0) or cropped from their start (research/predictions.py eval_batches):
    one compiled forward pass per padded voice length (research/data/crop.py bucket).
    """
    model.eval()
    graphdef, state = nnx.split(model)
    state = replicate(state, mesh)
    predictions = Predictions()
    for batch in data.batches(cfg.data.batch_size, **eval_batches(cfg)):
        batch = dropped(batch, drop)
        n = len(batch["target"])
        out = to_numpy(forward(graphdef, state, to_device(pad(batch, cfg.data.batch_size), mesh)))
        loss = float(out.pop("loss"))
        kept = [
            k for k in out if k in ("log_probs", "embedding") or k.removesuffix("_embedding") in cfg.model.modalities
        ]
        predictions.add(batch, loss, {k: out[k][:n].astype(np.float32) for k in kept})
    return predictions.arrays(class_copies(cfg))
