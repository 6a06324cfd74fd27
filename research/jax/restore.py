"""A finished run brought back from its directory: the model rebuilt from record.json's resolved config,
best.safetensors loaded, the data loaded as in training. Used by experiments/ensemble.py and attack.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from flax import nnx
from jax.sharding import Mesh

from research.config import Config, from_dict
from research.data.loader import Splits, load
from research.jax import checkpoint
from research.jax.model import FusionModel, build_model
from research.jax.predict import make_mesh, predict


class Restored(NamedTuple):
    model: FusionModel  # in eval mode
    splits: Splits
    cfg: Config
    device: Mesh  # jax runs on the devices it sees (JAX_PLATFORMS=cpu forces the CPU)


def restore(run_dir: Path, device: str = "auto") -> Restored:
    """The run's best model, its data and its config (`device` is torch's flag and unused here)."""
    cfg = from_dict(json.loads((Path(run_dir) / "record.json").read_text())["config"])
    splits = load(cfg.data)
    rngs = nnx.Rngs(params=cfg.run.seed, dropout=cfg.run.seed, augment=cfg.run.seed)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=rngs)
    template = {"params": nnx.state(model, nnx.Param), "variables": nnx.split(model, nnx.Param, nnx.RngState, ...)[3]}
    best, _ = checkpoint.load(Path(run_dir) / "best.safetensors", template)
    nnx.update(model, best["params"], best["variables"])
    model.eval()
    return Restored(model, splits, cfg, make_mesh())


def split_predictions(run: Restored) -> dict[str, dict]:
    """research/jax/predict.py's per-sample arrays of the val and test splits."""
    return {split: predict(run.model, getattr(run.splits, split), run.cfg, run.device) for split in ("val", "test")}
