"""Training runs of one epoch on adapters' manifests through the torch trainer: First Impressions (face from
the .mp4 frames, voice from its AAC track, text from the transcription pickle), and VoxCeleb1 with its
official Vox1-O trial list scored at the end of the run."""

import dataclasses
import math

from experiments.prepare import prepare
from research.config import Config, apply_overrides
from research.data import manifest
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


def test_a_run_on_voxceleb1_reports_the_official_vox1_o_list(layouts_source, tmp_path):
    out = tmp_path / "vox1.csv"
    prepared = prepare("voxceleb1", layouts_source["voxceleb1"][0], Options(out, progress=False))
    # Two open-split val identities (the fixture has one), so that per-epoch validation has non-target trials.
    rows = [dataclasses.replace(r, open_split="val") if r.subject == "id10002" else r for r in prepared.rows]
    manifest.write(out, rows, prepared.meta)
    cfg = apply_overrides(
        Config(),
        [f"--dataset={out}", f"--run.out={tmp_path / 'runs'}", "--run.wandb=disabled", "--run.progress=false",
         "--data.split=open", "--model.modalities=voice", "--data.voice_seconds=0.25", "--data.batch_size=4",
         "--model.dim=16", "--model.layers=1", "--optim.epochs=1", "--eval.plots=false", "--eval.trials=50"],
    )  # fmt: skip
    summary = train_and_evaluate(cfg, tmp_path / "runs" / "vox1", "vox1")
    assert {"test/vox1-o/eer", "test/vox1-o/min_dcf_0.01", "test/eer"} <= set(summary)
    assert "test/vox1-e/eer" not in summary  # Vox1-E spans training identities: no split holds it
    scores = (tmp_path / "runs" / "vox1" / "eval" / "test" / "metrics.json").read_text()
    assert '"vox1-o/eer"' in scores
