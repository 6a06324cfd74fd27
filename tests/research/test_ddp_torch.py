"""Torch DDP under torchrun with 2 gloo processes on the CPU (research/torch/distributed.py and the trainer).

Every job runs as a subprocess under a wall-clock limit (LIMIT_S) and every collective under the process
group's timeout (FUSION_DIST_TIMEOUT_S), so a hung rank fails the test instead of hanging CI. Workers end
with os._exit after destroying the group: a gloo thread may still free the last collective's tensors,
and a thread that asks for the GIL during interpreter finalisation aborts the process (see
tests/losses/test_ddp_torch.py).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from experiments.configs import preset
from research.config import apply_overrides
from research.data.loader import load
from research.torch.model import build_model
from research.torch.predict import to_device
from research.torch.trainer import make_optimizer, train_and_evaluate, train_step, warmup_cosine

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 240  # per job; a healthy 2-rank job here takes seconds to tens of seconds


def torchrun(args: list[str], tmp_path: Path, nproc: int = 2, timeout_s: float = 10) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "FUSION_DIST_TIMEOUT_S": str(timeout_s)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT_S)


WORKER = textwrap.dedent(
    """
    import os, time
    import numpy as np
    import torch.distributed as dist
    from research.torch import distributed

    world = distributed.init("cpu")
    try:
        assert world.size == 2 and dist.get_backend() == "gloo"
        assert distributed.per_rank_batch(8, world) == 4
        try:
            distributed.per_rank_batch(7, world)
            raise AssertionError("an indivisible batch was accepted")
        except ValueError:
            pass
        assert distributed.broadcast(f"rank{world.rank}", world) == "rank0"
        assert distributed.mean(float(world.rank + 1), world) == 1.5
        # 7 samples: rank 0 predicts samples 0, 2, 4, 6 and rank 1 samples 1, 3, 5 (pipeline.order)
        emb = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
        target = np.array([0, -1, 2, 3, -1, 5, 6])
        mine = np.arange(world.rank, 7, 2)
        known = (target[mine] >= 0).sum()
        losses = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
        shard = {"embedding": emb[mine], "target": target[mine], "loss": losses[mine][target[mine] >= 0].mean()}
        got = distributed.gather_predictions(shard, world)
        assert np.array_equal(got["embedding"], emb) and np.array_equal(got["target"], target)
        assert np.isclose(got["loss"], losses[target >= 0].mean()), got["loss"]
        # a rank that does not come to a collective: the other fails within the group's timeout
        if world.rank == 1:
            time.sleep(6)
        else:
            start = time.monotonic()
            try:
                distributed.mean(1.0, world)
                raise AssertionError("a collective without its peer returned")
            except RuntimeError:
                print(f"timed out after {time.monotonic() - start:.1f} s", flush=True)
    finally:
        distributed.close(world)
    os._exit(0)
    """
)


def test_collectives_of_two_gloo_ranks_and_their_timeout(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    done = torchrun(["worker.py"], tmp_path, timeout_s=3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    waited = [float(line.split()[3]) for line in done.stdout.splitlines() if line.startswith("timed out")]
    assert len(waited) == 1 and 2.5 < waited[0] < 6, done.stdout


def tiny_args(out: Path, data_root: Path, *extra: str) -> list[str]:
    """The main job's preset (what experiments/run.py starts from) made tiny: without BatchNorm (ViT encoders:
    SyncBatchNorm needs GPUs), dropout or SpecAugment, and
    with every modality present, so 2 ranks of 4 samples compute exactly the loss of 1 process of 8."""
    return [
        f"--run.out={out}",
        f"--data.root={data_root}",
        "--run.wandb=disabled",
        "--run.progress=false",
        "--data.synthetic.identities=8",
        "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5",
        "--data.batch_size=8",
        "--model.face=face_vit",
        "--model.voice=voice_vit",
        "--model.dim=32",
        "--model.layers=1",
        "--model.fusion_layers=1",
        "--model.dropout=0",
        "--model.spec_augment=false",
        "--optim.epochs=2",
        "--eval.plots=false",
        "--eval.trials=200",
        *extra,
    ]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "record.json").read_text())


def assert_same_training(a: dict, b: dict) -> None:
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert abs(ha[key] - hb[key]) < 1e-5, (key, ha, hb)


def test_accumulated_micro_batches_make_the_update_of_one_batch(data_root):
    cfg = apply_overrides(preset("default"), tiny_args(data_root, data_root))
    splits = load(cfg.data)
    batch = to_device(next(iter(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True))), "cpu")
    updated = []
    for k in (1, 4):  # 4 micro-batches of 2
        cfg.optim.accumulate = k
        torch.manual_seed(0)
        model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None).train()
        optimizer = make_optimizer(model, cfg)
        measured = train_step(model, optimizer, warmup_cosine(optimizer, 1, 10), batch, cfg)
        updated.append((measured, [p.grad.clone() for p in model.parameters()]))
    (one, whole), (four, summed) = updated
    assert abs(one["loss"] - four["loss"]) < 1e-5 and abs(one["grad_norm"] - four["grad_norm"]) < 1e-5
    for a, b in zip(whole, summed, strict=True):  # the gradients AdamW stepped with
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7), (a - b).abs().max()


def test_two_gloo_ranks_train_like_one_process_and_resume(tmp_path, data_root):
    one = apply_overrides(preset("default"), tiny_args(tmp_path / "runs", data_root, "--run.name=one"))
    train_and_evaluate(one, tmp_path / "runs" / "one", "one")  # also writes the dataset the ranks read
    reference = record(tmp_path / "runs" / "one")
    assert reference["world_size"] == 1 and reference["per_device_batch"] == 8

    # 2 ranks, interrupted after epoch 1, then rerun: resumes from rank 0's checkpoint
    args = ["experiments/run.py", *tiny_args(tmp_path / "runs", data_root, "--run.name=two")]
    first = torchrun([*args, "--run.stop_after_epoch=1"], ROOT, timeout_s=120)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert record(tmp_path / "runs" / "two")["status"] == "interrupted"
    second = torchrun(args, ROOT, timeout_s=120)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    two = record(tmp_path / "runs" / "two")
    assert two["status"] == "finished"
    assert two["world_size"] == 2 and two["per_device_batch"] == 4 and two["devices"] == ["cpu (cpu)"] * 2
    assert_same_training(reference, two)
    metrics = [k for k in reference["summary"] if k.startswith(("val/", "test/"))]
    assert "test/acc" in metrics
    for key in metrics:  # rank 0 evaluates the best epoch the gathered validation picked
        assert abs(reference["summary"][key] - two["summary"][key]) < 1e-5, key
    assert second.stdout.count("results") == 1  # rank 0 reports, rank 1 does not
    # rank 1 wrote nothing: the run directory holds what a one-process run leaves
    assert sorted(p.name for p in (tmp_path / "runs" / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "runs" / "one").iterdir()
    )
