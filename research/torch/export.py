"""The torch side of research/export.py: the run's embedding as a function of the inputs alone, traced by
torch.export with dynamic batch and voice-length axes, written as an ONNX file (torch.onnx.export, the dynamo
exporter, from that program; its client: onnxruntime) or as the program itself (.pt2; torch.export.load)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from research.config import Config
from research.export import absent, example, inputs, min_samples, stream_kept
from research.torch.model import FusionModel, embedding


class Embedder(nn.Module):
    """`embedder(*inputs) -> (B, E)`: the inputs of research/export.py `inputs`, in order; the run's other
    modalities read zeros and are marked missing."""

    def __init__(self, model: FusionModel, cfg: Config, modality: str | None):
        super().__init__()
        self.model, self.cfg, self.modality = model, cfg, modality
        self.names = [x.name for x in inputs(cfg, modality, "torch")]
        self.stream = stream_kept(cfg, modality)

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        batch = filled(dict(zip(self.names, arrays, strict=True)), self.cfg, self.modality)
        streams, present = self.model.fused(batch)  # {name: (B, D)}, {name: (B,) bool}
        return streams[self.stream].float() if self.stream else embedding(streams, present)  # (B, E)


def filled(batch: dict[str, torch.Tensor], cfg: Config, modality: str | None) -> dict[str, torch.Tensor]:
    """The model's batch: the inputs, zeros for the other modalities, presence flags."""
    b = batch[next(iter(batch))].shape[0]
    for x in absent(cfg, modality, "torch"):
        batch[x.name] = torch.zeros((b, *x.shape[1:]), dtype=getattr(torch, x.dtype))
    for m in sorted(cfg.model.modalities):
        batch[f"{m}_present"] = torch.full((b,), modality in (None, m))  # (B,) bool
    return batch


def write(model: FusionModel, cfg: Config, modality: str | None, fmt: str, path: Path) -> None:
    """Write the export of format `fmt` ("onnx", "pt2") to `path`, traced on example inputs with the batch and voice
    length axes dynamic."""
    module = Embedder(model, cfg, modality).eval()
    spec = inputs(cfg, modality, "torch")
    arrays = example(spec, cfg)
    dims = {"batch": torch.export.Dim("batch"), "samples": torch.export.Dim("samples", min=min_samples(cfg))}
    axes = tuple({k: dims[a] for k, a in enumerate(x.shape) if isinstance(a, str)} for x in spec)
    args = tuple(torch.from_numpy(v) for v in arrays.values())
    with torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes={"arrays": axes})  # forward(*arrays)
    if fmt == "pt2":
        torch.export.save(program, path)
    else:
        names = {"input_names": list(arrays), "output_names": ["embeddings"]}  # "embedding": aten.embedding's value
        torch.onnx.export(program, args, path, **names, dynamo=True, external_data=False)  # one file: weights inside
