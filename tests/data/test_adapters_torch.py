"""Training on adapters' manifests: one epoch through the torch trainer on First Impressions (face from the
.mp4 frames, voice from its AAC track, text from the transcription pickle) and on VoxCeleb1 with its official
Vox1-O trial list scored at the end of the run; one training step on every other adapter's manifest."""

import dataclasses
import math

import pytest
import torch

from experiments.prepare import prepare
from research.config import Config
from research.config_parse import apply_overrides
from research.data import manifest
from research.data.datasets.common import Options
from research.data.loader import load
from research.torch.model import build_model
from research.torch.predict import to_device
from research.torch.trainer import make_optimizer, train_and_evaluate, train_step, warmup_cosine


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


ONE_STEP = {  # adapter -> (modalities, extra prepare options): the adapters that no test above trains on
    "voxceleb2": ("voice", {}),
    "vggface2": ("face", {}),
    "librispeech": ("text,voice", {}),
    "voxceleb2-vggface2": ("face,voice", {"faces": "vggface2"}),
    "voxceleb1-vggface": ("face,voice", {"faces": "vggface"}),
    "voxceleb2-voxceleb1": ("voice", {"test_root": "voxceleb1"}),
}


@pytest.mark.parametrize("name", ONE_STEP)
def test_one_training_step_on_each_adapters_manifest(name, layouts_source, tmp_path):
    """The manifest loads through the input pipeline and the assembled model takes a finite AdamW step."""
    modalities, extra = ONE_STEP[name]
    root = layouts_source[name.split("-")[0]][0]
    options = Options(tmp_path / f"{name}.csv", progress=False, **{k: layouts_source[v][0] for k, v in extra.items()})
    prepare(name, root, options)
    cfg = apply_overrides(
        Config(),
        [f"--dataset={options.out}", f"--model.modalities={modalities}", "--data.image_size=16",
         "--data.voice_seconds=0.25", "--model.dim=16", "--model.layers=1", "--model.fusion_layers=1"],
    )  # fmt: skip
    splits = load(cfg.data)
    classes = len(splits.classes[cfg.data.target])
    model = build_model(cfg, classes, splits.vocab_size, None)
    optimizer = make_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, 1, 2)
    size = min(4, len(splits.train))
    with splits.train.batches(size, shuffle=True, seed=0, epoch=1, train=True) as batches:
        batch = to_device(next(iter(batches)), torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    measured = train_step(model, optimizer, scheduler, batch, cfg)
    assert math.isfinite(measured["loss"]) and measured["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
