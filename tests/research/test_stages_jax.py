"""The training stages of the jax trainer, as tests/research/test_stages_torch.py checks torch's: the weight
average (optim.ema, in the jitted step), the average of the last epochs' weights (eval.average_last) and a second
stage from a whole run (model.init_model). One run with both on (3 epochs of 2 steps, the last 2 averaged) is the
reference: a copy killed with SIGKILL in the middle of epoch 1 and rerun must end with its history, test metrics
and checkpoints exactly.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.jax import checkpoint, trainer
from research.jax.model import build_model, init_model, variables

REPO = Path(__file__).resolve().parents[2]
# 32 training samples in batches of 12: two steps per epoch (the partial batch is dropped).
ARGS = [
    "--backend=jax", "--run.wandb=disabled", "--run.progress=false", "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=6", "--data.synthetic.noise=0.3", "--data.voice_seconds=0.5",
    "--data.batch_size=12", "--model.dim=16", "--modalities=face", "--fusion=late", "--loss=arcface",
    "--eval.plots=false", "--eval.trials=200", "--optim.ema=0.5", "--eval.average_last=2", "--optim.epochs=3",
]  # fmt: skip


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data_root) -> Path:
    folder = tmp_path_factory.mktemp("jax_stages")
    jax.config.update("jax_compilation_cache_dir", str(folder / "xla"))  # the killed run and its rerun reuse it
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cfg = config(folder / "runs", data_root, "whole")
    trainer.train_and_evaluate(cfg, folder / "runs" / "whole", "whole")
    yield folder / "runs" / "whole"
    jax.config.update("jax_compilation_cache_dir", None)


def config(out: Path, data_root: Path, name: str, *args: str) -> Config:
    return apply_overrides(
        Config(), [f"--run.out={out}", f"--data.root={data_root}", f"--run.name={name}", *ARGS, *args]
    )


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


def test_the_ema_is_validated_kept_and_resumed_with_the_trained_weights(whole):
    last = load_file(whole / "last.safetensors")
    third = load_file(whole / "epoch_3.safetensors")  # the evaluated weights of the last epoch: the average's
    assert {k for k in last if k.startswith("['ema']")} == {f"['ema']{k}" for k in third}
    for key, value in third.items():
        np.testing.assert_array_equal(value, last[f"['ema']{key}"], err_msg=key)
    moved = [k for k in third if not np.array_equal(third[k], last[k])]  # the trained weights are elsewhere
    assert len(moved) > len(third) // 2


def test_the_report_evaluates_the_mean_of_the_last_epochs(whole):
    assert record(whole)["summary"]["selection"] == "average of epochs 2-3"
    assert not (whole / "epoch_1.safetensors").exists()  # pruned beyond k = 2
    files = [load_file(whole / f"epoch_{e}.safetensors") for e in (2, 3)]
    averaged = load_file(whole / "averaged.safetensors")
    assert averaged.keys() == files[0].keys()
    for key, value in averaged.items():
        stack = [f[key] for f in files]
        floating = np.issubdtype(value.dtype, np.floating)
        want = np.mean(stack, axis=0, dtype=np.float64).astype(value.dtype) if floating else stack[-1]
        np.testing.assert_array_equal(value, want, err_msg=key)
    assert any(not np.array_equal(files[0][k], files[1][k]) for k in files[0])


def test_a_stage_run_killed_mid_epoch_resumes_to_the_uninterrupted_run(whole, data_root):
    out = whole.parent
    argv = [sys.executable, "experiments/run.py", f"--run.out={out}", f"--data.root={data_root}", *ARGS]
    argv += ["--run.name=killed", "--run.checkpoint_every=1"]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    last = out / "killed" / "last.safetensors"
    victim = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not last.exists():
            assert victim.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        victim.kill()
    assert (checkpoint.read_meta(last)["epoch"], checkpoint.read_meta(last)["step"]) == (0, 1)  # inside epoch 1
    resumed = config(out, data_root, "killed", "--run.checkpoint_every=0")  # the same run, fewer files written
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


def test_a_second_stage_starts_from_the_whole_averaged_model(whole, data_root):
    cfg = config(whole.parent, data_root, "second", f"--model.init_model={whole}", "--optim.epochs=1", "--optim.ema=0")
    cfg.eval.average_last = 0
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None, rngs=nnx.Rngs(1))
    init_model(model, cfg)  # as the trainer does when training starts
    weights = {"params": nnx.state(model, nnx.Param), "variables": variables(model)}
    loaded = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(weights)[0]}
    averaged = load_file(whole / "averaged.safetensors")
    assert loaded.keys() == averaged.keys() and any("heads" in k for k in loaded)  # encoders, fusion and heads
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, averaged[key], err_msg=key)
    summary = trainer.train_and_evaluate(cfg, whole.parent / "second", "second")  # and it trains from there
    assert summary["selection"] == "val/acc" and np.isfinite(
        record(whole.parent / "second")["history"][0]["train/loss"]
    )
