"""A trained run's embedding model as a file another runtime runs (experiments/export.py), framework-free: the
formats and the backend that writes each, the argument checks, the model's inputs (names, dtypes, dynamic axes),
example inputs, and the JSON sidecar that tells a client how to call the file. research/{torch,jax}/export.py
trace the model; docs/evaluation.md "Export" has the clients.

The exported function is the embedding experiments/embed.py writes (research/embedding.py `chosen`): with a
modality, a late fusion's stream of it, else the fused embedding with the other modalities masked as missing
(their encoders read zeros, as embed.py's batches of that modality alone hold); without one, the fused embedding
of samples that have all of the run's modalities. It computes in float32 (no bf16 autocast).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from research.config import Config
from research.config_parse import from_dict

MIN_SECONDS = 0.1  # the shortest voice an exported model takes (its front end needs whole frames)


class Format(NamedTuple):
    backend: str  # the backend whose model is traced (a run of the other is converted: research/restore.py)
    needs: tuple[str, ...]  # modules the export needs beyond the backend


FORMATS = {
    "onnx": Format("torch", ("onnx", "onnxscript")),  # torch.onnx.export, dynamo exporter (onnxruntime: the client)
    "pt2": Format("torch", ()),  # torch.export.save: the ExportedProgram (torch.jit is deprecated)
    "stablehlo": Format("jax", ()),  # jax.export: serialised StableHLO, weights as constants
}


class Input(NamedTuple):
    name: str
    dtype: str  # a NumPy dtype name
    shape: tuple[str | int, ...]  # "batch" and "samples" are dynamic


def problem(run_dir: Path, fmt: str, modality: str | None) -> str | None:
    """What is wrong with the arguments before anything loads (one line), or None."""
    if not (run_dir / "record.json").exists() or not (run_dir / "best.safetensors").exists():
        return f"{run_dir} holds no record.json and best.safetensors of a finished run"
    cfg = run_config(run_dir)
    if modality is not None and modality not in cfg.model.modalities:
        return f"--modality {modality}: the run's model has {', '.join(cfg.model.modalities)}"
    if FORMATS[fmt].backend == "torch" and cfg.model.voice == "voice_vit" and modality in (None, "voice"):
        if "voice" in cfg.model.modalities:  # its strips of 4 frames: torch.export cannot keep the length dynamic
            return f"--format {fmt} cannot export voice_vit with a dynamic voice length: --format stablehlo can"
    missing = [name for name in FORMATS[fmt].needs if importlib.util.find_spec(name) is None]
    if missing:
        return f"--format {fmt} needs {', '.join(missing)}: pip install 'fusion-research[export]'"
    return None


def run_config(run_dir: Path) -> Config:
    return from_dict(json.loads((run_dir / "record.json").read_text())["config"])


def min_samples(cfg: Config) -> int:
    return round(MIN_SECONDS * cfg.data.sample_rate)


def all_inputs(cfg: Config, backend: str) -> dict[str, list[Input]]:
    """Every modality's model inputs: lengths and token ids are int32 in jax (it runs without 64-bit types)."""
    index, d = "int32" if backend == "jax" else "int64", cfg.data
    return {
        "face": [Input("face", "float32", ("batch", 3, d.image_size, d.image_size))],  # RGB in [0, 1]
        "voice": [Input("voice", "float32", ("batch", "samples")), Input("voice_len", index, ("batch",))],
        "text": [Input("text_ids", index, ("batch", d.text_len)), Input("text_mask", "bool", ("batch", d.text_len))],
    }


def inputs(cfg: Config, modality: str | None, backend: str) -> list[Input]:
    """The exported function's inputs in order: those of `modality`, or of every modality of the run."""
    spec = all_inputs(cfg, backend)
    return [x for m in sorted(cfg.model.modalities) if modality in (None, m) for x in spec[m]]


def absent(cfg: Config, modality: str | None, backend: str) -> list[Input]:
    """The zero inputs of the run's other modalities (shapes after the batch axis concrete): a missing voice is the
    1 s of zeros that embed.py's batches pad it to (research/data/crop.py bucket(0), not imported: it needs Grain)."""
    spec, rate = all_inputs(cfg, backend), cfg.data.sample_rate
    concrete = lambda x: x._replace(shape=tuple(rate if a == "samples" else a for a in x.shape))  # noqa: E731
    return [concrete(x) for m in sorted(cfg.model.modalities) if modality not in (None, m) for x in spec[m]]


def stream_kept(cfg: Config, modality: str | None) -> str | None:
    """The stream whose raw vector is the embedding (late fusion, one modality), or None: the fused embedding."""
    return modality if modality is not None and cfg.model.fusion == "late" else None


def example(spec: list[Input], cfg: Config) -> dict[str, np.ndarray]:
    """Inputs of two samples to trace the model with (a batch of one would fix the batch axis at 1): noise, the
    second voice and text shorter."""
    rng, s, n = np.random.default_rng(0), cfg.data.sample_rate, cfg.data.text_len
    arrays = {
        "face": rng.random((2, 3, cfg.data.image_size, cfg.data.image_size), dtype=np.float32),
        "voice": (0.1 * rng.standard_normal((2, s))).astype(np.float32),
        "voice_len": np.array([s, s * 3 // 4]),
        "text_ids": rng.integers(1, 3, (2, n)),
        "text_mask": np.arange(n) < np.array([[n], [n // 2]]),
    }
    return {x.name: arrays[x.name].astype(x.dtype) for x in spec}


def export(run: Any, run_dir: Path, fmt: str, modality: str | None, out: Path) -> dict:
    """Write the run's embedding model (`run`: research/restore.py Restored, in the format's backend) to `out` and
    its sidecar to `out`.json; the sidecar's contents."""
    backend, cfg = FORMATS[fmt].backend, run.cfg
    spec = inputs(cfg, modality, backend)
    out.parent.mkdir(parents=True, exist_ok=True)
    importlib.import_module(f"research.{backend}.export").write(run.model, cfg, modality, fmt, out)
    streams = 1 if stream_kept(cfg, modality) else len(run.model.fusion.streams)
    meta = sidecar(cfg, run_dir, fmt, modality, spec, streams * cfg.model.dim) | {"file": out.name}
    Path(f"{out}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def sidecar(cfg: Config, run_dir: Path, fmt: str, modality: str | None, spec: list[Input], size: int) -> dict:
    """What a client needs to call the file: the inputs in order, the output, the sizes the inputs have."""
    names = {x.name for x in spec}
    meta = {
        "format": fmt, "run": str(run_dir), "modality": modality or "fused", "fusion": cfg.model.fusion,
        "inputs": [{"name": x.name, "dtype": x.dtype, "shape": list(x.shape)} for x in spec],
        "output": {"name": "embeddings", "dtype": "float32", "shape": ["batch", size]},
        "normalised": stream_kept(cfg, modality) is None,  # the fused embedding has unit norm when present
    }  # fmt: skip
    if "voice" in names:
        meta |= {"sample_rate": cfg.data.sample_rate, "min_samples": min_samples(cfg)}
    if "face" in names:
        meta |= {"image_size": cfg.data.image_size}
    if "text_ids" in names:
        meta |= {"text_len": cfg.data.text_len, "tokenizer": cfg.data.tokenizer}
    return meta
