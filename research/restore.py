"""A finished run brought back from its directory: the model rebuilt from record.json's resolved config by
the run's backend, best.safetensors loaded, the data loaded as in training. Used by experiments/evaluate.py,
ensemble.py and attack.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from research import backend as backends
from research.config import Config
from research.config_parse import from_dict
from research.data.loader import Splits, load


class Restored(NamedTuple):
    model: Any  # the backend's FusionModel, in eval mode
    splits: Splits
    cfg: Config
    device: Any  # where the model runs: a torch device, a jax mesh (the backend's place)
    backend: ModuleType  # research/{torch,jax}/backend.py


def restore(run_dir: Path, device: str = "auto") -> Restored:
    """The run's best model, its data and its config (`device`: "auto", "cpu", "cuda", ...)."""
    cfg = from_dict(json.loads((Path(run_dir) / "record.json").read_text())["config"])
    backend = backends.load(cfg.run.backend)
    place = backend.place(device)
    splits = load(cfg.data)
    classes = len(splits.classes[cfg.data.target])
    model = backend.load_model(cfg, classes, splits.vocab_size, Path(run_dir) / "best.safetensors", place)
    return Restored(model, splits, cfg, place, backend)


def split_predictions(run: Restored) -> dict[str, dict]:
    """The backend's per-sample arrays (its predict) of the val and test splits."""
    splits = {"val": run.splits.val, "test": run.splits.test}
    return {split: run.backend.predict(run.model, data, run.cfg, run.device) for split, data in splits.items()}
