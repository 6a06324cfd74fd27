"""A training run of one epoch on an adapter's manifest: First Impressions (face from the .mp4 frames,
voice from its AAC track, text from the transcription pickle), through the torch trainer."""

import math

from experiments.prepare import prepare
from research.config import Config, apply_overrides
from research.data.datasets.common import Options
from research.torch.trainer import train_and_evaluate


def test_one_epoch_on_the_first_impressions_manifest(layouts_source, tmp_path):
    out = tmp_path / "fi.csv"
    prepare("firstimpressions", layouts_source["firstimpressions"][0], Options(out, fps=1.0, progress=False))
    cfg = apply_overrides(
        Config(),
        [
            f"--dataset={out}",
            f"--run.out={tmp_path / 'runs'}",
            "--run.wandb=disabled",
            "--run.progress=false",
            "--data.image_size=16",
            "--data.voice_seconds=0.25",
            "--data.batch_size=8",
            "--data.target=ethnicity",
            "--model.dim=16",
            "--model.layers=1",
            "--model.fusion_layers=1",
            "--optim.epochs=1",
            "--eval.plots=false",
        ],
    )
    summary = train_and_evaluate(cfg, tmp_path / "runs" / "fi", "fi")
    assert summary["best_epoch"] == 1 and math.isfinite(summary["val/acc"]) and math.isfinite(summary["test/acc"])
    assert 0.0 <= summary["test/acc"] <= 1.0
