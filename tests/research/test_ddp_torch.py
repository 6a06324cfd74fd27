"""Torch DDP under torchrun with 2 gloo processes on the CPU (research/torch/distributed.py and the trainer).

Every job runs as a subprocess under a wall-clock limit (LIMIT_S) and every collective under the process
group's timeout (FUSION_DIST_TIMEOUT_S), so a hung rank fails the test instead of hanging CI. Workers end
with os._exit after destroying the group: a gloo thread may still free the last collective's tensors,
and a thread that asks for the GIL during interpreter finalisation aborts the process (see
tests/losses/test_ddp_torch.py).
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments.configs import preset
from research.config_parse import apply_overrides
from research.data.loader import load
from research.torch import checkpoint
from research.torch.model import build_model
from research.torch.predict import to_device
from research.torch.trainer import make_optimizer, train_and_evaluate, train_step, warmup_cosine

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 240  # per job; a healthy 2-rank job here takes seconds to tens of seconds


def torchrun_command(args: list[str], nproc: int = 2, timeout_s: float = 10) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "FUSION_DIST_TIMEOUT_S": str(timeout_s)}
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args], env


def torchrun(args: list[str], tmp_path: Path, nproc: int = 2, timeout_s: float = 10) -> subprocess.CompletedProcess:
    cmd, env = torchrun_command(args, nproc, timeout_s)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT_S)


WORKER = textwrap.dedent(
    """
    import os, time
    import numpy as np
    import torch
    import torch.distributed as dist
    from losses.torch.arcface import Arcface
    from losses.torch.cosface import Cosface
    from losses.torch.sphereface2 import Sphereface2
    from research.torch import distributed, sharding

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
        # sharded centres, 5 classes in blocks of 3 and 2: checkpoint state and scores as one process has them
        torch.manual_seed(0)
        whole = torch.nn.Module()
        whole.heads = torch.nn.ModuleDict({"x": Cosface(dim=3, classes=5)})
        model = torch.nn.Module()
        model.heads = torch.nn.ModuleDict({"x": Cosface(dim=3, classes=5)})
        model.load_state_dict(whole.state_dict())
        sharding.shard_heads(model, 5, 1.0, world)
        rows = slice(0, 3) if world.rank == 0 else slice(3, 5)
        assert torch.equal(model.heads["x"].head.weight, whole.heads["x"].weight[rows])
        optimizers = [torch.optim.AdamW(m.parameters(), lr=0.1) for m in (whole, model)]
        for m, opt in zip((whole, model), optimizers):
            for p in m.parameters():
                p.grad = p.detach() ** 2  # a gradient of each row's own values
            opt.step()
        full, full_optim = sharding.full_state(model, optimizers[1], world)
        if world.rank == 0:
            assert full.keys() == whole.state_dict().keys()
            assert torch.equal(full["heads.x.weight"], whole.state_dict()["heads.x.weight"])
            assert torch.equal(full_optim["state"][0]["exp_avg"], optimizers[0].state_dict()["state"][0]["exp_avg"])
        own, own_optim = sharding.own_state(model, optimizers[1], whole.state_dict(), optimizers[0].state_dict())
        assert torch.equal(own["heads.x.head.weight"], model.heads["x"].head.weight.detach())
        assert torch.equal(own_optim["state"][0]["exp_avg"], optimizers[1].state_dict()["state"][0]["exp_avg"])
        x = torch.randn(4, 3)  # the same rows on both ranks (same seed)
        model.eval()
        assert torch.allclose(model.heads["x"].scores(x), whole.heads["x"].scores(x), atol=1e-6)
        model.train()
        mine = x[2 * world.rank : 2 * world.rank + 2]  # train mode: this rank's rows of a global batch of 4
        assert torch.allclose(model.heads["x"].scores(mine), whole.heads["x"].scores(mine), atol=1e-6)
        # one DDP step through sharded heads: every gradient and the clipped norm as one process on the global batch
        for make in (Arcface, Sphereface2):  # a softmax-type head; one with a replicated parameter (the bias)
            torch.manual_seed(1)
            whole = torch.nn.Module()
            whole.enc, whole.heads = torch.nn.Linear(3, 3), torch.nn.ModuleDict({"x": make(dim=3, classes=5)})
            model = torch.nn.Module()
            model.enc, model.heads = torch.nn.Linear(3, 3), torch.nn.ModuleDict({"x": make(dim=3, classes=5)})
            model.load_state_dict(whole.state_dict())
            model.forward = lambda x, y: model.heads["x"](model.enc(x), y)[0]
            sharding.shard_heads(model, 5, 1.0, world)
            x, y = torch.randn(8, 3), torch.tensor([0, 4, 3, 3, 1, 2, 4, 0])  # the global batch
            whole.heads["x"](whole.enc(x), y)[0].backward()
            want = torch.nn.utils.clip_grad_norm_(whole.parameters(), 0.5)
            ddp = distributed.wrap(model, world, sync_bn=False)
            ddp(x[4 * world.rank : 4 * world.rank + 4], y[4 * world.rank : 4 * world.rank + 4]).backward()
            got = sharding.clip_grad_norm(ddp, 0.5)
            assert torch.allclose(got, want, atol=1e-5), (make, got, want)
            block = model.heads["x"].head
            pairs = [(model.enc.weight.grad, whole.enc.weight.grad), (model.enc.bias.grad, whole.enc.bias.grad)]
            pairs.append((block.weight.grad, whole.heads["x"].weight.grad[rows]))  # this rank's centres
            if make is Sphereface2:
                pairs.append((block.bias.grad, whole.heads["x"].bias.grad))
            for a, b in pairs:
                assert torch.allclose(a, b, atol=1e-6), (make, a, b)
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


def test_collectives_and_sharded_centres_of_two_gloo_ranks_and_their_timeout(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    done = torchrun(["worker.py"], tmp_path, timeout_s=3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    waited = [float(line.split()[3]) for line in done.stdout.splitlines() if line.startswith("timed out")]
    assert len(waited) == 1 and 2.5 < waited[0] < 6, done.stdout


def job_pids(root: int) -> list[int]:
    """`root` and its descendants, from /proc: torchrun starts each rank in a session of its own, so killing
    torchrun's process group would leave the ranks running."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
    pids, frontier = [root], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        pids += sorted(frontier)
    return pids


def kill_job(root: int) -> None:
    """SIGKILL torchrun and every rank at once, as a lost machine would, and wait until they are gone."""
    pids = job_pids(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in pids[1:]):  # the ranks (torchrun itself is reaped by wait())
        assert time.monotonic() < deadline, "the killed ranks did not go within 60 s"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited: its locks and files are released)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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


@pytest.fixture(scope="module")
def one(tmp_path_factory, data_root) -> Path:
    """The one-process run with the global batch (8) that the 2-rank jobs must reproduce; its runs folder."""
    runs = tmp_path_factory.mktemp("ddp") / "runs"
    cfg = apply_overrides(preset("default"), tiny_args(runs, data_root, "--run.name=one"))
    train_and_evaluate(cfg, runs / "one", "one")  # also writes the dataset the ranks read
    return runs


def assert_same_metrics(reference: dict, run: dict) -> None:
    """Every val/test metric of the end-of-run evaluations within 1e-5."""
    metrics = [k for k in reference["summary"] if k.startswith(("val/", "test/"))]
    assert "test/acc" in metrics
    for key in metrics:  # rank 0 evaluates the best epoch the gathered validation picked
        assert abs(reference["summary"][key] - run["summary"][key]) < 1e-5, key


def test_two_gloo_ranks_train_like_one_process_and_resume(one, data_root):
    reference = record(one / "one")
    assert reference["world_size"] == 1 and reference["per_device_batch"] == 8

    # 2 ranks, interrupted after epoch 1, then rerun: resumes from rank 0's checkpoint
    args = ["experiments/run.py", *tiny_args(one, data_root, "--run.name=two")]
    first = torchrun([*args, "--run.stop_after_epoch=1"], ROOT, timeout_s=120)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert record(one / "two")["status"] == "interrupted"
    second = torchrun(args, ROOT, timeout_s=120)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    two = record(one / "two")
    assert two["status"] == "finished"
    assert two["world_size"] == 2 and two["per_device_batch"] == 4 and two["devices"] == ["cpu (cpu)"] * 2
    assert_same_training(reference, two)
    assert_same_metrics(reference, two)
    assert second.stdout.count("results") == 1  # rank 0 reports, rank 1 does not
    # rank 1 wrote nothing: the run directory holds what a one-process run leaves
    assert sorted(p.name for p in (one / "two").iterdir()) == sorted(p.name for p in (one / "one").iterdir())


def test_a_two_rank_job_killed_mid_epoch_resumes_to_the_same_metrics(one, data_root, tmp_path):
    """torchrun and both ranks SIGKILLed once rank 0 has published a mid-epoch checkpoint;
    the rerun resumes inside epoch 1 and ends with the one-process run's history and metrics (the 2-rank
    run equals it within 1e-5: the test above)."""
    args = ["experiments/run.py", *tiny_args(one, data_root, "--run.name=killed", "--run.checkpoint_every=1")]
    last = one / "killed" / "last.safetensors"
    cmd, env = torchrun_command(args, timeout_s=120)
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + LIMIT_S
        while not last.exists():
            assert job.poll() is None, "the job ended before its first checkpoint: " + errors.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint within {LIMIT_S} s"
            time.sleep(0.02)
        kill_job(job.pid)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            kill_job(job.pid)
    meta = checkpoint.read_meta(last)
    assert meta["epoch"] == 0 and 1 <= meta["step"] < 4, meta  # inside epoch 1 (4 steps of 8)
    again = torchrun(args, ROOT, timeout_s=120)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"epoch 0 done, {meta['step']} steps into the next" in again.stdout  # resumed mid-epoch
    reference, killed = record(one / "one"), record(one / "killed")
    assert killed["status"] == "finished"
    assert_same_training(reference, killed)
    assert_same_metrics(reference, killed)


def test_sharded_centres_on_two_gloo_ranks_train_like_one_process(one, data_root):
    """loss.shard_centres=true: each rank holds 4 of the 8 classes' centres; the per-epoch losses, the
    validation and test metrics and the best checkpoint (encoders, fusion and the whole centre matrix,
    gathered by rank 0) equal the one-process run with the whole head within 1e-5."""
    args = ["experiments/run.py", *tiny_args(one, data_root, "--run.name=sharded", "--loss.shard_centres=true")]
    done = torchrun(args, ROOT, timeout_s=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reference, sharded = record(one / "one"), record(one / "sharded")
    assert sharded["status"] == "finished" and sharded["world_size"] == 2
    assert_same_training(reference, sharded)
    assert_same_metrics(reference, sharded)
    assert_same_weights(one / "one" / "best.safetensors", one / "sharded" / "best.safetensors")


def test_a_one_process_checkpoint_resumes_on_two_ranks_with_sharded_centres(one, data_root):
    """Checkpoints do not depend on the world size: the one-process run's epoch-1 `last` (kept as its
    last.previous), resumed by 2 ranks with sharded centres (each loads its block of the whole matrix and of
    its AdamW moments), trains epoch 2 as the one-process run did: the epoch's metrics and the epoch-2
    `last` (model and optimizer, gathered back) within 1e-5."""
    folder = one / "resharded"
    folder.mkdir()
    shutil.copy(one / "one" / "last.previous.safetensors", folder / "last.safetensors")
    shutil.copy(one / "one" / "best.safetensors", folder / "best.safetensors")  # the end-of-run report's
    args = ["experiments/run.py", *tiny_args(one, data_root, "--run.name=resharded", "--loss.shard_centres=true")]
    done = torchrun(args, ROOT, timeout_s=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "epoch 1 done, 0 steps into the next" in done.stdout
    reference, resumed = record(one / "one"), record(folder)
    assert [h["epoch"] for h in resumed["history"]] == [2]
    for key in ("train/loss", "val/loss", "val/acc", "lr"):
        assert abs(reference["history"][1][key] - resumed["history"][0][key]) < 1e-5, key
    assert_same_weights(one / "one" / "last.safetensors", folder / "last.safetensors")


def assert_same_weights(want_path: Path, got_path: Path) -> None:
    """Every model and optimizer tensor of two checkpoints within 1e-5, the whole (8, D) centre matrix among
    them, but for the key half of the attention's kv biases: softmax over keys is invariant to them, so
    their gradient is float rounding, which AdamW's normalised steps amplify to O(lr) in any two runs that
    sum in another order (measured: 6e-5 there, at most 4e-6 in the other tensors)."""
    want, got = load_file(str(want_path)), load_file(str(got_path))
    assert got.keys() == want.keys() and got["model/heads.fused.linear.weight"].shape[0] == 8
    for key, value in want.items():
        if key.startswith("rng/"):
            continue
        if key.endswith("kv.bias"):
            key_half = value.shape[0] // 2
            value, got[key] = value[key_half:], got[key][key_half:]
        torch.testing.assert_close(got[key], value, atol=1e-5, rtol=0, msg=key)
