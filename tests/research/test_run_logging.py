"""What a run logs and keeps, in both backends: every run.log_every steps the step's loss, learning rate, gradient
norm and samples/s (in the record's `steps`, and W&B), whose loss averages to the epoch's train/loss and whose
learning rate is the schedule's; one printed line per epoch with --run.progress=false; run.keep deciding which
checkpoints a finished run leaves; W&B's config without the loss sections the run does not use."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments import run  # noqa: E402
from research.config import Config  # noqa: E402
from research.config_parse import apply_overrides, to_dict  # noqa: E402
from research.jax.trainer import warmup_cosine  # noqa: E402
from research.tracking import logged_config  # noqa: E402

STEPS = 4  # per epoch: 32 training samples in batches of 8
TINY = [
    "--run.wandb=disabled", "--run.progress=false", "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=6", "--data.voice_seconds=0.5", "--data.batch_size=8", "--model.dim=16",
    "--modalities=face", "--fusion=late", "--optim.epochs=2", "--eval.plots=false", "--eval.trials=100",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


def train(tmp_path: Path, data_root: Path, *args: str) -> tuple[dict, set[str]]:
    """(record, checkpoint files left) of a tiny run."""
    assert run.main([f"--run.out={tmp_path}", f"--data.root={data_root}", "--run.name=r", *TINY, *args]) == 0
    folder = tmp_path / "r"
    return json.loads((folder / "record.json").read_text()), {p.name for p in folder.glob("*.safetensors")}


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_steps_are_logged_and_agree_with_the_epoch_and_the_schedule(tmp_path, data_root, capsys, backend):
    record, kept = train(tmp_path, data_root, f"--backend={backend}", "--run.log_every=1")
    steps = record["steps"]
    assert [s["step"] for s in steps] == list(range(1, 2 * STEPS + 1))
    assert [s["epoch"] for s in steps] == [1] * STEPS + [2] * STEPS
    for epoch in (1, 2):
        losses = [s["train/step_loss"] for s in steps if s["epoch"] == epoch]
        assert np.mean(losses) == pytest.approx(record["history"][epoch - 1]["train/loss"], rel=1e-6)
    schedule = warmup_cosine(2e-3, STEPS, 2 * STEPS)  # optim.lr, 1 warm-up epoch: jax's twin of torch's scheduler
    lrs = [float(schedule(n)) for n in range(2 * STEPS)]
    assert [s["train/lr"] for s in steps] == pytest.approx(lrs, rel=1e-6)
    assert all(s["train/grad_norm"] > 0 and s["train/samples_per_s"] > 0 for s in steps)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"] and all("train/loss" in line for line in lines)
    # keep=all: last was written twice (its previous copy kept); best once or twice, as validation went
    assert {"best.safetensors", "last.safetensors", "last.previous.safetensors"} <= kept
    assert kept <= {"best.safetensors", "best.previous.safetensors", "last.safetensors", "last.previous.safetensors"}


@pytest.mark.parametrize(("keep", "left"), [("best", {"best.safetensors"}), ("none", set())])
def test_run_keep_leaves_only_what_it_says(tmp_path, data_root, keep, left):
    record, kept = train(tmp_path, data_root, f"--run.keep={keep}", "--run.log_every=0")
    assert record["status"] == "finished" and record["steps"] == []
    assert kept == left


def test_wandb_gets_the_config_without_the_unused_loss_sections_and_the_record_keeps_all():
    cfg = apply_overrides(Config(), ["--loss=arcface"])
    loss = logged_config(cfg)["loss"]
    assert "arcface" in loss and not {"cosface", "sphereface", "sphereface2", "triplet", "cross_modal"} & set(loss)
    assert loss["name"] == "arcface" and "label_smoothing" in loss
    assert {"cosface", "triplet"} <= set(to_dict(cfg)["loss"])
    match = logged_config(
        apply_overrides(Config(), ["--model.task=match", "--loss=cross_modal", "--fusion=late", "--data.split=open"])
    )
    assert "cross_modal" in match["loss"] and "arcface" not in match["loss"]
