"""`run.compile`: the torch trainer with torch.compile trains as the eager trainer does.

Inductor compiles the forward and backward of the whole model once (every batch has one shape: the last
partial batch is dropped), so a face-only late-fusion model at 16 px keeps it to about a minute on this
CPU (the default model takes about 14 minutes to compile here: docs/scaling.md). Compiled kernels sum in
another order than eager ones: after two steps the losses of a probe differed by 2.3e-6, hence the 1e-4
tolerance, far below what a wrong graph (a missed parameter update, dropout off) would change.
"""

import json
from pathlib import Path

import pytest

from research.torch.trainer import train_and_evaluate

SMALL = ("--modalities=face", "--fusion=late", "--data.image_size=16", "--model.dim=16", "--optim.epochs=1")


def history(cfg) -> list[dict]:
    return json.loads((Path(cfg.run.out) / cfg.run.name / "record.json").read_text())["history"]


def test_a_compiled_run_trains_as_the_eager_run(tiny):
    eager, compiled = tiny(*SMALL, "--run.name=eager"), tiny(*SMALL, "--run.name=compiled", "--run.compile=true")
    expected = train_and_evaluate(eager, Path(eager.run.out) / "eager", "eager")
    found = train_and_evaluate(compiled, Path(compiled.run.out) / "compiled", "compiled")
    for he, hc in zip(history(eager), history(compiled), strict=True):
        for key in ("train/loss", "val/loss", "val/acc"):
            assert hc[key] == pytest.approx(he[key], rel=1e-4, abs=1e-4), key
    assert found["test/acc"] == expected["test/acc"]
    assert found["test/loss"] == pytest.approx(expected["test/loss"], rel=1e-4, abs=1e-4)
