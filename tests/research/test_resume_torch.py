"""Mid-epoch exact resume of the torch trainer: run.py SIGKILLed after a mid-epoch checkpoint, then rerun.

The killed run writes `last` every step (run.checkpoint_every=1); it is killed as soon as the first
mid-epoch checkpoint is published. The rerun (same --run.name, in this process so its steps can be
counted) must end with the uninterrupted run's history and test metrics, exactly: same remaining batches,
same dropout and SpecAugment masks, the same epoch loss.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.configs import preset
from research.config_parse import apply_overrides
from research.torch import checkpoint, trainer

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4  # 1 epoch of 32 training samples in batches of 8


def args(out: Path, data_root: Path, name: str) -> list[str]:
    """The main job made tiny, with dropout and SpecAugment on (their masks must survive the resume)."""
    return [
        f"--run.out={out}",
        f"--data.root={data_root}",
        f"--run.name={name}",
        "--run.wandb=disabled",
        "--run.progress=false",
        "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5",
        "--data.batch_size=8",
        "--model.dim=32",
        "--model.layers=1",
        "--model.fusion_layers=1",
        "--model.dropout=0.2",
        "--modalities=face,voice",
        "--optim.epochs=1",
        "--eval.plots=false",
        "--eval.trials=200",
        "--run.log_every=1",
    ]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(tmp_path, data_root, monkeypatch):
    out = tmp_path / "runs"
    whole = apply_overrides(preset("default"), args(out, data_root, "whole"))
    trainer.train_and_evaluate(whole, out / "whole", "whole")  # also writes the dataset the subprocess reads

    killed = args(out, data_root, "killed") + ["--run.checkpoint_every=1"]
    last = out / "killed" / "last.safetensors"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the thread count of this process: the same float sums
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        victim = subprocess.Popen(
            [sys.executable, "experiments/run.py", *killed], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 240
        while not last.exists():
            assert victim.poll() is None, "the run ended before its first checkpoint: " + errors.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        victim.kill()
    meta = checkpoint.read_meta(last)
    assert meta["epoch"] == 0 and 1 <= meta["step"] < STEPS, meta  # killed inside epoch 1
    assert set(meta) >= {"pipeline", "loss_sum"}

    calls = []
    real_step = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda *a: calls.append(1) or real_step(*a))
    again = apply_overrides(preset("default"), killed)
    trainer.train_and_evaluate(again, out / "killed", "killed")
    assert len(calls) == STEPS - meta["step"]  # continued after the checkpoint's step, not from the epoch's start
    a, b = record(out / "whole"), record(out / "killed")
    assert b["status"] == "finished" and [h["epoch"] for h in b["history"]] == [1]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert ha[key] == hb[key], (key, ha, hb)
    for key in ("test/acc", "test/loss", "val/acc"):
        assert a["summary"][key] == b["summary"][key], key
    # The steps logged before the kill (written with its checkpoint) and after the resume: every step once, alike.
    measured = ("step", "epoch", "train/step_loss", "train/lr", "train/grad_norm")
    assert [[s[k] for k in measured] for s in a["steps"]] == [[s[k] for k in measured] for s in b["steps"]]
    assert [s["step"] for s in b["steps"]] == list(range(1, STEPS + 1))
    assert checkpoint.read_meta(last)["step"] == 0  # the end-of-epoch checkpoint replaced the mid-epoch one
