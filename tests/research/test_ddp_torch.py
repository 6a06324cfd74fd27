"""Torch DDP under torchrun with 2 gloo processes on the CPU (research/torch/distributed.py and the trainer).

Every job runs as a subprocess under a wall-clock limit (LIMIT_S) and every collective under the process
group's timeout (FUSION_DIST_TIMEOUT_S), so a hung rank fails the test instead of hanging CI. Workers end
with os._exit after destroying the group: a gloo thread may still free the last collective's tensors,
and a thread that asks for the GIL during interpreter finalisation aborts the process (see
tests/losses/test_ddp_torch.py).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
            time.sleep(12)
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
    assert len(waited) == 1 and 2.5 < waited[0] < 11, done.stdout
