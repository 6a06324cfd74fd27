"""The jax side of research/export.py: the run's embedding as a function of the inputs alone, exported by
jax.export with symbolic batch and voice-length axes (jax.export.symbolic_shape) and the weights closed over as
constants, serialised StableHLO for CPU, CUDA and TPU (its client: jax.export.deserialize(bytes).call)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from research.config import Config
from research.export import absent, inputs, min_samples, stream_kept
from research.jax.model import FusionModel, embedding

PLATFORMS = ("cpu", "cuda", "tpu")  # where the file runs: jax.export lowers for each, without their devices


class Embedder:
    """`embedder(*inputs) -> (B, E)`: the inputs of research/export.py `inputs`, in order; the run's other
    modalities read zeros and are marked missing."""

    def __init__(self, model: FusionModel, cfg: Config, modality: str | None):
        self.model, self.cfg, self.modality = model, cfg, modality
        self.names = [x.name for x in inputs(cfg, modality, "jax")]
        self.stream = stream_kept(cfg, modality)

    def __call__(self, *arrays: jax.Array) -> jax.Array:
        batch = filled(dict(zip(self.names, arrays, strict=True)), self.cfg, self.modality)
        streams, present = self.model.fused(batch)  # {name: (B, D)}, {name: (B,) bool}
        return streams[self.stream].astype(jnp.float32) if self.stream else embedding(streams, present)  # (B, E)


def filled(batch: dict[str, jax.Array], cfg: Config, modality: str | None) -> dict[str, jax.Array]:
    """The model's batch: the inputs, zeros for the other modalities, presence flags."""
    b = batch[next(iter(batch))].shape[0]
    for x in absent(cfg, modality, "jax"):
        batch[x.name] = jnp.zeros((b, *x.shape[1:]), dtype=x.dtype)
    for m in sorted(cfg.model.modalities):
        batch[f"{m}_present"] = jnp.full((b,), modality in (None, m))  # (B,) bool
    return batch


def write(model: FusionModel, cfg: Config, modality: str | None, fmt: str, path: Path) -> None:
    """Write the export of format `fmt` ("stablehlo") to `path`, traced on abstract inputs with the batch and voice
    length axes symbolic."""
    function = jax.jit(Embedder(model, cfg, modality))
    spec = inputs(cfg, modality, "jax")
    names = sorted({a for x in spec for a in x.shape if isinstance(a, str)})  # batch, and samples with a voice
    least = [f"samples >= {min_samples(cfg)}"] if "samples" in names else []
    dims = dict(zip(names, jax.export.symbolic_shape(", ".join(names), constraints=least), strict=True))
    specs = [jax.ShapeDtypeStruct(tuple(dims.get(a, a) for a in x.shape), x.dtype) for x in spec]
    exported = jax.export.export(function, platforms=PLATFORMS)(*specs)  # lowered for each, on any machine
    path.write_bytes(exported.serialize())
