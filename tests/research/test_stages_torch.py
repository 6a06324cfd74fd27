"""The training stages of the torch trainer (docs/training.md): the weight average (optim.ema), the average of
the last epochs' weights (eval.average_last, experiments/average.py) and a second stage from a whole run
(model.init_model, the large-margin preset experiments/configs/lm.py).

One run with both on (3 epochs of 4 steps, the last 2 epochs averaged) is the reference: a copy killed with
SIGKILL in the middle of epoch 1 and rerun must end with its history, test metrics and checkpoints exactly.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from experiments import average
from experiments.configs import preset
from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.torch import checkpoint, ema, trainer
from research.torch.model import build_model, init_model

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["--optim.ema=0.5", "--eval.average_last=2", "--optim.epochs=3"]  # decay 0.5: the average moves visibly


def args(out: Path, data_root: Path, name: str) -> list[str]:
    """A tiny ArcFace run of face and voice with dropout (its masks must survive the resume)."""
    return [
        f"--run.out={out}", f"--data.root={data_root}", f"--run.name={name}", "--run.wandb=disabled",
        "--run.progress=false", "--data.synthetic.identities=8", "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5", "--data.batch_size=8", "--model.dim=32", "--model.layers=1",
        "--model.fusion_layers=1", "--model.dropout=0.2", "--modalities=face,voice", "--loss=arcface",
        "--loss.arcface.margin=0.2", "--eval.plots=false", "--eval.trials=200", "--data.synthetic.noise=0.3", *STAGES,
    ]  # fmt: skip


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("stages") / "runs"
    cfg = apply_overrides(Config(), args(out, data_root, "whole"))
    trainer.train_and_evaluate(cfg, out / "whole", "whole")
    return out / "whole"


def test_ema_is_the_lerp_of_every_floating_entry_and_copies_integers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = ema.make(model, 0.9)
    before = {k: v.clone().numpy() for k, v in average.state_dict().items()}
    model(torch.randn(4, 3))  # BatchNorm statistics and its counter move
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(average, model, 0.9)
    for key, value in average.state_dict().items():
        new = model.state_dict()[key].numpy()
        want = before[key] + 0.1 * (new - before[key]) if value.is_floating_point() else new
        np.testing.assert_allclose(value.numpy(), want, rtol=1e-6, err_msg=key)
    assert average.state_dict()["1.num_batches_tracked"] == 1 and ema.make(model, 0.0) is None


def test_the_ema_is_validated_kept_and_resumed_with_the_trained_weights(whole):
    last = load_file(whole / "last.safetensors")
    third = load_file(whole / "epoch_3.safetensors")  # the evaluated weights of the last epoch: the average's
    assert {k.removeprefix("ema/") for k in last if k.startswith("ema/")} == {k.removeprefix("model/") for k in third}
    for key, value in third.items():
        np.testing.assert_array_equal(value, last[key.replace("model/", "ema/", 1)], err_msg=key)
    moved = [k for k in third if not np.array_equal(third[k], last[k])]  # the trained weights are elsewhere
    assert len(moved) > len(third) // 2


def test_the_report_evaluates_the_mean_of_the_last_epochs(whole, tmp_path):
    summary = record(whole)["summary"]
    assert summary["selection"] == "average of epochs 2-3"
    assert not (whole / "epoch_1.safetensors").exists()  # pruned beyond k = 2
    files = [load_file(whole / f"epoch_{e}.safetensors") for e in (2, 3)]
    averaged = load_file(whole / "averaged.safetensors")
    assert averaged.keys() == files[0].keys()
    for key, value in averaged.items():
        if np.issubdtype(value.dtype, np.floating):  # the NumPy mean of the two
            np.testing.assert_array_equal(
                value, np.mean([f[key] for f in files], axis=0, dtype=np.float64).astype(value.dtype)
            )
        else:  # BatchNorm's num_batches_tracked: the last epoch's
            np.testing.assert_array_equal(value, files[1][key], err_msg=key)
    assert any(not np.array_equal(files[0][k], files[1][k]) for k in files[0])
    # experiments/average.py gives the same file, from the run or from the files.
    assert average.main(["--run", str(whole), "--last", "2", "--out", str(tmp_path / "a.safetensors")]) == 0
    files = [str(whole / f"epoch_{e}.safetensors") for e in (2, 3)]
    assert average.main(["--checkpoints", *files, "--out", str(tmp_path / "b.safetensors")]) == 0
    for name in ("a", "b"):
        got = load_file(tmp_path / f"{name}.safetensors")
        assert all(np.array_equal(got[k], averaged[k]) for k in averaged)


def test_a_stage_run_killed_mid_epoch_resumes_to_the_uninterrupted_run(whole, data_root, tmp_path):
    out = whole.parent
    killed = args(out, data_root, "killed") + ["--run.checkpoint_every=1"]
    last = out / "killed" / "last.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(
        [sys.executable, "experiments/run.py", *killed], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not last.exists():
            assert victim.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        victim.kill()
    meta = checkpoint.read_meta(last)
    assert meta["epoch"] == 0 and 1 <= meta["step"] < 4, meta  # killed inside epoch 1
    resumed = apply_overrides(Config(), killed + ["--run.checkpoint_every=0"])  # the same run, fewer files written
    trainer.train_and_evaluate(resumed, out / "killed", "killed")
    a, b = record(whole), record(out / "killed")
    assert b["status"] == "finished" and [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert ha[key] == hb[key], (key, ha, hb)
    for key in ("test/acc", "test/loss", "val/acc", "selection"):
        assert a["summary"][key] == b["summary"][key], key
    for name in ("averaged", "best", "last"):
        want, got = load_file(whole / f"{name}.safetensors"), load_file(out / "killed" / f"{name}.safetensors")
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want), name


def test_init_model_starts_from_the_whole_averaged_model_and_refuses_another(whole, data_root):
    cfg = apply_overrides(Config(), args(whole.parent, data_root, "second") + [f"--model.init_model={whole}"])
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None)
    init_model(model, cfg)  # as the trainer does when training starts
    averaged = load_file(whole / "averaged.safetensors")
    state = model.state_dict()
    assert {f"model/{k}" for k in state} == averaged.keys()  # encoders, fusion and heads
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), averaged[f"model/{key}"], err_msg=key)
    other = apply_overrides(cfg, ["--fusion=late", "--model.dim=16"])
    differ = r"model.fusion='cross_attn' there, 'late' here; model.dim=32 there, 16 here$"
    with pytest.raises(ValueError, match=r"^model.init_model: run .* built another model: " + differ):
        init_model(model, other)


def test_the_large_margin_stage_trains_from_the_run(whole):
    cfg = preset(f"lm:{whole}")
    assert cfg.model.init_model == str(whole) and cfg.loss.arcface.margin == 0.5  # from 0.2
    assert (cfg.data.voice_seconds, cfg.optim.epochs, cfg.optim.warmup_epochs) == (6.0, 5, 1.0)
    assert cfg.optim.lr == pytest.approx(Config().optim.lr * 1e-3) and cfg.data.batch_size == 4
    assert cfg.eval.average_last == 0 and cfg.optim.ema == 0.5 and cfg.model.dropout == 0.2  # the run's
    # A short stage 2 (crop and epochs cut for the test) trains from the run (init_model loads it: the test above).
    name = "lm"
    cfg = apply_overrides(cfg, [f"--run.name={name}", "--data.voice_seconds=0.5", "--optim.epochs=1"])
    summary = trainer.train_and_evaluate(cfg, whole.parent / name, name)
    assert summary["selection"] == "val/acc" and record(whole.parent / name)["config"]["model"]["init_model"] == str(
        whole
    )
