"""A finished run brought back from its directory: the model rebuilt from record.json's resolved config,
best.safetensors loaded, the data loaded as in training. Used by experiments/ensemble.py and attack.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from research.config import Config, from_dict
from research.data.loader import Splits, load
from research.torch import checkpoint
from research.torch.model import FusionModel, build_model
from research.torch.predict import pick_device, predict


class Restored(NamedTuple):
    model: FusionModel  # in eval mode
    splits: Splits
    cfg: Config
    device: torch.device


def restore(run_dir: Path, device: str = "auto") -> Restored:
    """The run's best model, its data and its config."""
    cfg = from_dict(json.loads((Path(run_dir) / "record.json").read_text())["config"])
    device = pick_device(device)
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None).to(device)
    checkpoint.load(Path(run_dir) / "best.safetensors", model)
    model.eval()
    return Restored(model, splits, cfg, device)


def split_predictions(run: Restored) -> dict[str, dict]:
    """research/torch/predict.py's per-sample arrays of the val and test splits."""
    return {split: predict(run.model, getattr(run.splits, split), run.cfg, run.device) for split in ("val", "test")}
