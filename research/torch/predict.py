"""Per-sample predictions of a model over one split, as NumPy arrays for research/evaluation.py,
and the device helpers they need."""

from __future__ import annotations

import numpy as np
import torch

from research.config import Config
from research.data.loader import SampleSet
from research.predictions import Predictions, class_copies, dropped, eval_batches
from research.torch.model import FusionModel


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def device_problem(requested: str) -> str | None:
    """Why run.device cannot be used on this machine (research/validate.py), or None when it can."""
    if requested == "auto":
        return None
    try:
        device = torch.device(requested)
    except RuntimeError:
        return "not a torch device name (auto, cpu, cuda, cuda:N, mps)"
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA GPU(s) that torch can use"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    return None


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


@torch.no_grad()
def predict(
    model: FusionModel,
    data: SampleSet,
    cfg: Config,
    device: torch.device,
    drop: str = "",
    rank: int = 0,
    world: int = 1,
) -> dict:
    """Per-sample arrays of one split: log_probs (models with a classifier), embedding, labels, presence,
    {m}_embedding, and the loss.

    `drop` names a modality to remove at test time (its presence flags are set to False). `rank` / `world`
    predict one rank's shard (samples rank, rank + world, ...; distributed.gather_predictions joins them).
    Voices are whole (eval.voice_seconds = 0) or cropped from their start (research/predictions.py eval_batches).
    """
    model.eval()
    predictions = Predictions()
    for batch in data.batches(cfg.data.batch_size, **eval_batches(cfg, rank=rank, world=world)):
        batch = dropped(batch, drop)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.optim.bf16):
            out = model(to_device(batch, device))
        arrays = {k: out[k] for k in ("log_probs", "embedding") if k in out}  # no log_probs without a classifier
        arrays |= {f"{s}_embedding": v for s, v in out["streams"].items() if s in cfg.model.modalities}
        predictions.add(batch, out["loss"].item(), {k: v.float().cpu().numpy() for k, v in arrays.items()})
    return predictions.arrays(class_copies(cfg))
