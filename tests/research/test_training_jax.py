"""JAX joint training end to end: one compilation of the step per run (the last partial batch included),
exact resume, non-finite loss, run records that evaluate.py and ablate.py read like torch's, and the same
losses on 2 devices as on 1.

The runs share one configuration (face CNN, late fusion: the point is the trainer, not the model) and a
persistent XLA cache, so each distinct program compiles once per file."""

import contextlib
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors import safe_open

from research.config import Config
from research.config_parse import apply_overrides
from research.data.loader import load
from research.jax import checkpoint, predict, trainer
from research.jax.distributed import make_mesh
from research.jax.model import build_model
from research.training import NonFiniteLoss

REPO = Path(__file__).resolve().parents[2]
EPOCH_1 = {"shuffle": True, "seed": 0, "epoch": 1, "train": True}
# 32 training samples in batches of 12: two steps per epoch and a partial batch of 8 that is dropped.
ARGS = [
    "--run.wandb=disabled", "--run.progress=false", "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=6", "--data.voice_seconds=0.5", "--data.batch_size=12",
    "--model.dim=16", "--modalities=face", "--fusion=late", "--optim.epochs=2", "--eval.plots=false",
    "--eval.trials=200",
]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("jax")
    jax.config.update("jax_compilation_cache_dir", str(folder / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield folder, data_root
    jax.config.update("jax_compilation_cache_dir", None)


def config(root, *args: str) -> Config:
    folder, data_root = root
    return apply_overrides(Config(), [f"--run.out={folder / 'runs'}", f"--data.root={data_root}", *ARGS, *args])


def run(cfg: Config) -> dict:
    return trainer.train_and_evaluate(cfg, Path(cfg.run.out) / cfg.run.name, cfg.run.name)


def record(cfg: Config) -> dict:
    return json.loads((Path(cfg.run.out) / cfg.run.name / "record.json").read_text())


@contextlib.contextmanager
def recorded_steps():
    """trainer.make_train_step patched: yields (the jitted steps it made, the loss of every step they ran)."""
    steps, losses = [], []
    make = trainer.make_train_step

    def recording(*args):
        steps.append(make(*args))

        def step(state, batch, i):
            state, measured = steps[-1](state, batch, i)
            losses.append(float(measured["loss"]))
            return state, measured

        return step

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "make_train_step", recording)
        yield steps, losses


@pytest.fixture(scope="module")
def runs(root):
    """An uninterrupted jax run, and one stopped after epoch 1 and resumed; the jitted steps they made and
    the uninterrupted run's step losses."""
    forward_cache = predict.forward._cache_size()  # other test files may have compiled it already
    with recorded_steps() as (steps, losses):
        whole = config(root, "--backend=jax", "--run.name=whole")
        run(whole)
        whole_losses = list(losses)
        parts = config(root, "--backend=jax", "--run.name=parts", "--run.stop_after_epoch=1")
        interrupted = run(parts)
        parts.run.stop_after_epoch = 0
        run(parts)
    forward_compiles = predict.forward._cache_size() - forward_cache
    return {
        "whole": whole,
        "parts": parts,
        "interrupted": interrupted,
        "steps": steps,
        "losses": whole_losses,
        "forward": forward_compiles,
    }


def test_the_step_compiles_once_per_run_including_the_last_batch(runs):
    cfg = runs["whole"]
    assert len(load(cfg.data).train) % cfg.data.batch_size  # there is a partial last batch
    assert len(runs["steps"]) == 3  # whole, parts, resumed parts
    assert [step._cache_size() for step in runs["steps"]] == [1, 1, 1]
    assert runs["forward"] <= 1  # evaluation pads its last batch: one shape for all three runs


def test_the_compiled_step_updates_the_adam_moments_in_place(root, monkeypatch):
    # trainer.CPU_COMPILER_OPTIONS: XLA:CPU's default copy insertion copies each moment of the donated state first.
    cfg = config(root, "--backend=jax")
    splits = load(cfg.data)
    schedule = trainer.warmup_cosine(cfg.optim.lr, 1, 10)
    tx = trainer.make_optimizer(schedule, cfg)
    mesh = make_mesh()
    batch = predict.to_device(next(splits.train.batches(cfg.data.batch_size, **EPOCH_1)), mesh)

    def moment_copies() -> int:
        model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=nnx.Rngs(0))
        graphdef, rngs, state = trainer.train_state(model, tx)
        step = trainer.make_train_step(graphdef, rngs, tx, schedule, cfg, mesh)
        hlo = step.lower(state, batch, 0).compile().as_text()
        return len(re.findall(r"= f32\[[\d,]*\]\S* copy\(%state__optim\S*__(?:mu|nu)__", hlo))

    assert moment_copies() == 0
    monkeypatch.setattr(trainer, "CPU_COMPILER_OPTIONS", {})
    assert moment_copies() > 0


def test_resume_after_interruption_reproduces_the_uninterrupted_run(runs):
    assert runs["interrupted"]["status"] == "interrupted"
    a, b = record(runs["whole"]), record(runs["parts"])
    assert b["status"] == "finished" and [h["epoch"] for h in b["history"]] == [1, 2]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert ha[key] == hb[key], (key, ha, hb)
    assert a["summary"]["test/acc"] == b["summary"]["test/acc"]
    assert a["summary"]["test/loss"] == b["summary"]["test/loss"]


def test_patience_stops_the_run_once_validation_has_not_improved_for_that_many_epochs(root, tmp_path):
    """As the torch twin's test: lr 1e-12, text alone, patience 2 stops after epoch 3 of 6. (Its own run folder:
    the module's is one ablate.py table of the other tests' runs.)"""
    cfg = config(root, "--backend=jax", "--modalities=text", "--optim.lr=1e-12", "--optim.epochs=6",
                 "--optim.patience=2", "--run.name=patient", f"--run.out={tmp_path}")  # fmt: skip
    summary = run(cfg)
    assert (summary["best_epoch"], summary["last_epoch"], len(record(cfg)["history"])) == (1, 3, 3)
    assert record(cfg)["status"] == "finished"


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(root, runs, monkeypatch):
    cfg = config(root, "--backend=jax", "--run.name=nan")
    real, calls = trainer.to_device, []

    def to_device(batch, mesh):  # the 4th training batch (epoch 2, step 1) carries a NaN pixel
        calls.append(1)
        if len(calls) == 4:
            batch = {**batch, "face": batch["face"].copy()}
            batch["face"].flat[0] = np.nan
        return real(batch, mesh)

    monkeypatch.setattr(trainer, "to_device", to_device)
    with pytest.raises(NonFiniteLoss, match="epoch 2, step 1") as err:
        run(cfg)
    last = Path(cfg.run.out) / "nan" / "last.safetensors"
    assert str(last) in str(err.value)
    assert checkpoint.read_meta(last)["epoch"] == 1
    with safe_open(str(last), framework="numpy") as f:
        assert all(np.isfinite(f.get_tensor(k)).all() for k in f.keys() if f.get_tensor(k).dtype.kind == "f")
    rec = record(cfg)
    assert rec["status"] == "failed" and "non-finite" in rec["error"]


def test_evaluate_py_reproduces_the_end_of_run_metrics_of_a_jax_run(runs, capsys):
    cfg = runs["whole"]
    folder = Path(cfg.run.out) / cfg.run.name
    evaluate = importlib.import_module("experiments.evaluate")
    assert evaluate.main(["--run", str(folder), "--out", str(folder / "again")]) == 0
    again = json.loads((folder / "again" / "summary.json").read_text())
    recorded = record(cfg)["summary"]
    metrics = [k for k in again if k.startswith(("val/", "test/"))]
    assert len(metrics) > 10 and recorded["params"] > 0
    for key in metrics:
        assert again[key] == pytest.approx(recorded[key], abs=1e-6), key


def test_ablate_puts_jax_and_torch_runs_in_one_table(root, runs, tmp_path, capsys):
    torch_trainer = importlib.import_module("research.torch.trainer")
    cfg = config(root, "--backend=torch", "--run.name=torch")
    torch_trainer.train_and_evaluate(cfg, Path(cfg.run.out) / "torch", "torch")
    ablate = importlib.import_module("experiments.ablate")
    args = ["--runs", cfg.run.out, "--by", "run.backend", "--metrics", "test/acc,params", "--out", str(tmp_path)]
    assert ablate.main(args) == 0
    table = (tmp_path / "runs.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|") and ("jax" in line or "torch" in line)]
    assert len(rows) == 2, table
    assert record(runs["whole"])["summary"]["params"] == record(cfg)["summary"]["params"]  # the same model


TWO_DEVICES = """
import json, sys
import jax
sys.path.insert(0, sys.argv[2])
from research.config import Config
from research.config_parse import apply_overrides
from test_training_jax import recorded_steps, run

assert len(jax.devices()) == 2, jax.devices()
args = json.loads(sys.argv[1])
for name, extra in (("data_parallel", []), ("sharded", ["--loss.shard_centres=true"])):
    with recorded_steps() as (_, losses):
        run(apply_overrides(Config(), [*args, f"--run.name={name}", *extra]))
    print(name, json.dumps(losses))
"""


@pytest.fixture(scope="module")
def two_devices(root) -> dict:
    """One subprocess on 2 fake CPU devices, two whole runs in the fixture's runs folder with their step losses:
    "data_parallel" (mesh (2, 1)) and "sharded", with loss.shard_centres (mesh (1, 2): each device reads 6 of
    the 12 samples and holds 4 of the 8 centres)."""
    cfg = config(root, "--backend=jax")
    args = [f"--run.out={cfg.run.out}", f"--data.root={cfg.data.root}", *ARGS, "--backend=jax"]
    flags = "--xla_force_host_platform_device_count=2 --xla_cpu_collective_timeout_seconds=60"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    for _attempt in range(2):  # CPU collectives can deadlock at start on a loaded 2-core machine: retry once
        try:
            out = subprocess.run(
                [sys.executable, "-c", TWO_DEVICES, json.dumps(args), str(Path(__file__).parent)],
                capture_output=True, text=True, timeout=480, env=env, cwd=REPO,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            continue
        assert out.returncode == 0, out.stderr[-3000:]
        break
    else:
        pytest.fail("the 2-device runs timed out twice")
    lines = dict(
        line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("data_parallel", "sharded"))
    )
    return {name: json.loads(losses) for name, losses in lines.items()}


def test_two_devices_give_the_losses_of_one(runs, two_devices):
    """Data parallel over 2 fake CPU devices: the batch is split, gradients all-reduced; the first steps'
    losses (the later ones after updates from all-reduced gradients) equal the 1-device run's."""
    one = runs["losses"][:2]
    assert len(one) == 2 and all(np.isfinite(one))
    np.testing.assert_allclose(two_devices["data_parallel"][:2], one, atol=1e-5, rtol=0)


def test_sharded_centres_on_two_devices_train_as_the_unsharded_run(runs, two_devices):
    """loss.shard_centres: the heads' loss from losses/jax/sharded.py over the "model" axis gives the first steps'
    losses of the unsharded runs on 1 and on the same 2 devices, and the 2-device run's metrics; the checkpoints
    hold the whole centre matrices under the unsharded run's keys (evaluate.py and restore read them like any
    run's)."""
    whole, out = runs["whole"], Path(runs["whole"].run.out)
    losses, reference = two_devices["sharded"], two_devices["data_parallel"]
    assert len(losses) == len(reference) == len(runs["losses"]) == 4
    np.testing.assert_allclose(losses[:2], reference[:2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(losses[:2], runs["losses"][:2], atol=1e-5, rtol=0)
    # Later steps: the sharded sums' rounding, grown by Adam's first updates (lr g / (|g| + eps) moves a weight by
    # about lr whatever the size of g, so a g that is all rounding moves it either way): sharded minus unsharded
    # on 2 devices measured 1.3e-5 at step 3 and 2.1e-4 at step 4 on an AMD EPYC (1.2e-7 on an earlier machine).
    np.testing.assert_allclose(losses, reference, atol=2e-3, rtol=0)
    a, b = (json.loads((out / name / "record.json").read_text()) for name in ("data_parallel", "sharded"))
    assert b["status"] == "finished" and b["config"]["loss"]["shard_centres"]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["val/acc"] == hb["val/acc"]
        np.testing.assert_allclose([hb["train/loss"], hb["val/loss"]], [ha["train/loss"], ha["val/loss"]], atol=2e-3)
    for key in ("test/acc", "val/acc", "best_epoch"):
        assert a["summary"][key] == b["summary"][key], key
    assert b["summary"]["test/loss"] == pytest.approx(a["summary"]["test/loss"], abs=2e-3)
    sharded, folder = out / "sharded", out / whole.run.name
    for name in ("best.safetensors", "last.safetensors"):
        with (
            safe_open(str(folder / name), framework="numpy") as fa,
            safe_open(str(sharded / name), framework="numpy") as fb,
        ):
            assert {k: fa.get_slice(k).get_shape() for k in fa.keys()} == {
                k: fb.get_slice(k).get_shape() for k in fb.keys()
            }
    with safe_open(str(sharded / "best.safetensors"), framework="numpy") as f:
        assert f.get_slice("['params']['heads']['face']['linear']['kernel'].value").get_shape() == [16, 8]  # (D, C)


def test_a_run_killed_with_sigkill_mid_epoch_resumes_to_the_uninterrupted_metrics(root, runs):
    """run.py in a subprocess with a `last` checkpoint after every step (run.checkpoint_every=1), SIGKILLed as
    soon as its first one (epoch 1, step 1 of 2) is published, then rerun with the same name: it resumes in the
    middle of epoch 1 (the lock of the killed process is gone) and ends with the uninterrupted run's history
    (the epoch's train/loss included) and test metrics."""
    cfg = runs["whole"]
    folder = Path(cfg.run.out) / "killed"
    argv = [sys.executable, "experiments/run.py", f"--run.out={cfg.run.out}", f"--data.root={cfg.data.root}", *ARGS]
    argv += ["--backend=jax", "--run.name=killed", "--data.synthetic.noise=0.3"]  # the schema's (the fixture's)
    argv += ["--run.checkpoint_every=1"]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    victim = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (folder / "last.safetensors").exists():
            assert victim.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        victim.kill()
    killed_at = checkpoint.read_meta(folder / "last.safetensors")
    # Killed within the next step and validation, before the end-of-epoch checkpoint (the window is >= 1 s).
    assert (killed_at["epoch"], killed_at["step"]) == (0, 1), killed_at
    assert isinstance(killed_at["pipeline"], dict) and math.isfinite(killed_at["loss_sum"])
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "epoch 0 done, 1 steps into the next" in again.stdout, again.stdout  # resumed mid-epoch, not at the start
    a, b = record(cfg), json.loads((folder / "record.json").read_text())
    assert b["status"] == "finished" and [h["epoch"] for h in b["history"]] == [1, 2]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert ha[key] == hb[key], (key, ha, hb)
    assert a["summary"]["test/acc"] == b["summary"]["test/acc"]
    assert a["summary"]["test/loss"] == b["summary"]["test/loss"]
    final = checkpoint.read_meta(folder / "last.safetensors")  # the end-of-epoch `last`: no position in the epoch
    assert (final["epoch"], final["step"]) == (2, 0) and "pipeline" not in final and "loss_sum" not in final, final
