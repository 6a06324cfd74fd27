"""Data parallel training under torchrun: the process group, one rank's view of the job, and the collectives
the trainer needs (DDP wrapping, gathered evaluation predictions, rank 0's decisions broadcast).

    torchrun --nproc_per_node=8 experiments/run.py ...    # one process a GPU (nccl); on CPU, gloo

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in the environment; a plain
`python experiments/run.py` has none and runs as a world of one, with no process group and no collective.
Every collective runs under the group's timeout (TIMEOUT): a rank that died or hangs makes the others fail
with an error instead of waiting forever. Only rank 0 writes (record, checkpoints, W&B): `is_main`, the rule
of research/tracking.py (is_writer).

With loss.shard_centres the heads' class centres are split across ranks: research/torch/sharding.py.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from research.config import Config
from research.tracking import Silent, Tracker, is_writer, process_tracker

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("FUSION_DIST_TIMEOUT_S", "600")))


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, world size, and the device it trains on."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return is_writer(self.rank)


def init(requested_device: str) -> World:
    """Join the process group torchrun describes (nccl on GPU, gloo on CPU), or a world of one without it.

    `requested_device` is run.device: "auto" gives each rank the GPU of its LOCAL_RANK when there is one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if requested_device == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(requested_device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    return World(rank, size, device)


def close(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, world: World) -> int:
    """data.batch_size is the global batch; each rank reads B / N samples of every step."""
    if global_batch % world.size:
        raise ValueError(f"data.batch_size={global_batch} is not divisible by the world size {world.size}")
    return global_batch // world.size


def wrap(model: torch.nn.Module, world: World, sync_bn: bool) -> torch.nn.Module:
    """The module the training step calls: DDP over the group (gradients all-reduced and averaged in
    backward), BatchNorm made SyncBatchNorm with run.sync_bn (batch statistics over the global batch;
    torch supports it on GPU only). Sharded centres stay out of DDP (research/torch/sharding.py shard_heads
    told it). A world of one returns the model itself."""
    if world.size == 1:
        return model
    if sync_bn:
        if world.device.type == "cpu":
            raise ValueError("run.sync_bn needs GPUs: torch's SyncBatchNorm does not run on the CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def broadcast(value, world: World):
    """Rank 0's value (any picklable object) on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def mean(value: float, world: World) -> float:
    """The mean over ranks of one number (a rank's step loss -> the global batch's loss)."""
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device if world.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.item() / world.size


def gather_predictions(preds: dict, world: World) -> dict:
    """Every rank's predictions of its shard, put back into split order on every rank.

    Rank r predicted samples r, r + N, r + 2N, ... (pipeline.order without shuffling), so sample i sits at
    position i // N of rank i % N's arrays. The loss is the mean over known labels: each rank's mean is
    weighted by its count of known labels, as a single process would weight its batches."""
    if world.size == 1:
        return preds
    shards = [None] * world.size
    dist.all_gather_object(shards, preds)
    n = sum(len(s["target"]) for s in shards)
    out = {}
    for key in shards[0]:
        if key == "loss":
            continue
        first = shards[0][key]
        full = np.empty((n, *first.shape[1:]), dtype=first.dtype)
        for r, shard in enumerate(shards):
            full[r :: world.size] = shard[key]
        out[key] = full
    known = np.array([(s["target"] >= 0).sum() for s in shards], dtype=np.float64)
    losses = np.array([s["loss"] for s in shards], dtype=np.float64)
    out["loss"] = np.float64((losses * known).sum() / max(known.sum(), 1))
    return out


def describe(world: World, per_device_batch: int) -> dict:
    """What the run record states about the job: world size, every rank's device, the per-device batch."""
    name = torch.cuda.get_device_name(world.device) if world.device.type == "cuda" else "cpu"
    devices = [f"{world.device} ({name})"]
    if world.size > 1:
        devices = [None] * world.size
        dist.all_gather_object(devices, f"{world.device} ({name})")
    return {"world_size": world.size, "devices": devices, "per_device_batch": per_device_batch}


def main_tracker(world: World, cfg: Config, run_dir: Path, name: str) -> Tracker | Silent:
    """research/tracking.py's tracker of this rank (process 0 tracks). When rank 0's fails (the directory is
    busy), every rank raises its error instead of waiting for rank 0."""
    tracker, problem = Silent(), None
    try:
        tracker = process_tracker(world.rank, cfg, run_dir, name)
    except Exception as err:  # noqa: BLE001 - raised again below, on every rank
        problem = err
    problem = broadcast(problem, world)
    if problem is not None:
        raise problem
    return tracker
