"""A finished run brought back from its directory: the model rebuilt from record.json's resolved config by
the run's backend, the checkpoint its report evaluated loaded (averaged.safetensors, else best.safetensors),
the data loaded as in training. Used by experiments/evaluate.py, ensemble.py, attack.py and embed.py."""

from __future__ import annotations

import json
from dataclasses import replace
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


def restore(run_dir: Path, device: str = "auto", *, decoded: bool = True, backend: str | None = None) -> Restored:
    """The run's best model, its data and its config (`device`: "auto", "cpu", "cuda", ...). decoded=False loads
    the data uncached, which decodes nothing (its class lists and vocabulary are all the model needs), for a
    caller that embeds other files (experiments/embed.py). `backend` (default: the run's) restores a run in the
    other backend: its weights go over under torch's names (encoders/jax/convert.py), and cfg.run.backend says so."""
    cfg = from_dict(json.loads((Path(run_dir) / "record.json").read_text())["config"])
    source, target = backends.load(cfg.run.backend), backends.load(backend or cfg.run.backend)
    place = target.place(device)
    splits = load(cfg.data if decoded else replace(cfg.data, cache=False))
    classes, path = len(splits.classes[cfg.data.target]), evaluated_checkpoint(Path(run_dir))
    if target is source:
        return Restored(target.load_model(cfg, classes, splits.vocab_size, path, place), splits, cfg, place, target)
    trained = source.load_model(cfg, classes, splits.vocab_size, path, source.place("cpu"))
    model = target.with_torch_state(cfg, classes, splits.vocab_size, source.torch_state(trained), place)
    return Restored(model, splits, replace(cfg, run=replace(cfg.run, backend=backend)), place, target)


def evaluated_checkpoint(run_dir: Path) -> Path:
    """The checkpoint the run's report evaluated: the average of its last epochs (eval.average_last) when it has
    one, else its best epoch (which holds the EMA weights with optim.ema)."""
    averaged = run_dir / "averaged.safetensors"
    return averaged if averaged.exists() else run_dir / "best.safetensors"


def split_predictions(run: Restored) -> dict[str, dict]:
    """The backend's per-sample arrays (its predict) of the val and test splits."""
    splits = {"val": run.splits.val, "test": run.splits.test}
    return {split: run.backend.predict(run.model, data, run.cfg, run.device) for split, data in splits.items()}
