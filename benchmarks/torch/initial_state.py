"""Write the initial weights of the torch model a run would train to a .npz file (its state dict).

    python benchmarks/torch/initial_state.py OUT.npz [run.py arguments, e.g. --seed 1]

The model is built exactly as research/torch/trainer.py builds it (`torch.manual_seed(run.seed)`, then
`build_model` with the training split's class weights), so the file holds the weights that the torch run
with the same arguments starts from. benchmarks/jax/same_init.py loads them into the jax twin.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from experiments.run import parse  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.training import class_weights  # noqa: E402


def main() -> None:
    out, cfg = Path(sys.argv[1]), parse(sys.argv[2:])
    torch.manual_seed(cfg.run.seed)
    splits = load(cfg.data)
    classes = len(splits.classes[cfg.data.target])
    weights = class_weights(cfg, splits.train.labels("target"), classes)
    weights = None if weights is None else torch.from_numpy(weights)
    model = build_model(cfg, classes, splits.vocab_size, weights)
    np.savez(out, **{k: v.numpy() for k, v in model.state_dict().items()})
    print(f"{out}: {len(model.state_dict())} tensors")


if __name__ == "__main__":
    main()
