"""Torch trainer: `train_and_evaluate(cfg, run_dir, name)` trains encoders + fusion + heads jointly.

A thin loop: AdamW, linear warm-up then cosine decay per step, gradient clipping, optional bf16
autocast, validation every epoch, the best epoch kept by the validation metric, and a `last`
checkpoint after every epoch (and every run.checkpoint_every steps inside one) from which a rerun
resumes exactly (same batches, same dropout masks, the same epoch loss).

The `last` checkpoint's meta: "epoch" (the last completed epoch), "step" (steps done in the next one; 0 at
an epoch's end), and mid-epoch "pipeline" (the training iterator's state) and "loss_sum" (the global
batches' losses summed so far in the epoch), plus the best-epoch bookkeeping. The torch CPU and CUDA RNG states
travel in the checkpoint (research/torch/checkpoint.py), so dropout after a resume draws the masks of the
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from research import averaging, checkpoint_files
from research.config import Config
from research.data.loader import Splits, load
from research.plots import images
from research.report import final_report
from research.torch import backend, checkpoint, distributed, ema, sharding
from research.torch.model import FusionModel, load_weights, parameter_report
from research.torch.predict import predict, to_device
from research.training import (
    NonFiniteLoss,
    converged,
    end_epoch,
    finish,
    finishing,
    fresh_progress,
    resume_point,
    setup_frozen,
    steps_per_epoch,
    stop_here,
    train_epoch,
    val_metrics,
)

__all__ = ["NonFiniteLoss", "train_and_evaluate"]


def make_optimizer(model: FusionModel, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, norms and embeddings of one dimension); with
    optim.encoder_lr_scale != 1 the encoders' groups learn at that multiple of optim.lr (only then: the groups
    of a checkpoint written without it stay the same). Fused: one kernel updates every tensor (on a CPU torch's
    default is a Python loop over them, 31 ms of the default model's step against 2.8 ms fused)."""
    params = [p for p in model.parameters() if p.requires_grad]
    parts = [(params, cfg.optim.lr)]
    if cfg.optim.encoder_lr_scale != 1.0:
        encoder = {id(p) for p in model.encoders.parameters()}
        parts = [  # the first group's learning rate is the one train_step reports
            ([p for p in params if id(p) not in encoder], cfg.optim.lr),
            ([p for p in params if id(p) in encoder], cfg.optim.lr * cfg.optim.encoder_lr_scale),
        ]
    groups = []
    for ps, lr in parts:
        groups.append({"params": [p for p in ps if p.ndim >= 2], "weight_decay": cfg.optim.weight_decay, "lr": lr})
        groups.append({"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0, "lr": lr})
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, fused=True)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr factor: linear from 1/warmup to 1 over `warmup` steps, then cosine to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model, optimizer, scheduler, batch: dict[str, torch.Tensor], cfg: Config) -> dict[str, float]:
    """One update: forward (bf16 autocast with --optim.bf16), loss, gradient, global-norm clipping, AdamW,
    schedule. Returns the step's measurements; a non-finite loss returns before touching the weights.

    With optim.accumulate = k the batch goes through in k micro-batches whose gradients (of loss / k) add
    up to the gradient of the batch's mean loss: the same update when every micro-batch has as many
    samples with a known label and present modalities (BatchNorm sees the micro-batches). Under DDP the
    gradients are all-reduced once, in the last micro-batch's backward."""
    k = cfg.optim.accumulate
    micro = [{key: v.tensor_split(k)[i] for key, v in batch.items()} for i in range(k)]  # (B / k, ...) each
    optimizer.zero_grad(set_to_none=True)
    value = 0.0
    for i, part in enumerate(micro):
        with torch.autocast(batch["target"].device.type, dtype=torch.bfloat16, enabled=cfg.optim.bf16):
            loss = model(part)["loss"] / k
        value += loss.item()
        if not math.isfinite(value):
            optimizer.zero_grad(set_to_none=True)
            return {"loss": value}
        last = i == k - 1
        with contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            loss.backward()
    grad_norm = sharding.clip_grad_norm(model, cfg.optim.clip if cfg.optim.clip > 0 else math.inf)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    return {"loss": value, "grad_norm": grad_norm.item(), "lr": lr}


def make_step(model, optimizer, scheduler, cfg: Config, world: distributed.World, after=None):
    """The epoch loop's step (research/training.py train_epoch): one update on this rank's part of a global
    batch, returning its measurements with the global batch's loss, alike on every rank (this rank's when it is
    not finite; the gradient norm is the global batch's, the learning rate the first group's). Its
    `number` (the run's step) is jax's; torch's scheduler counts the steps itself. `after()` follows every
    update (the weight average's, optim.ema)."""

    def step(batch: dict, number: int) -> dict[str, float]:
        measured = train_step(model, optimizer, scheduler, to_device(batch, world.device), cfg)
        loss = measured["loss"]
        if after is not None and math.isfinite(loss):
            after()
        return measured | {"loss": distributed.mean(loss, world) if math.isfinite(loss) else loss}

    return step


def rank_batch(cfg: Config, world: distributed.World) -> int:
    """The rows of a global batch that each rank trains on; a whole number of micro-batches."""
    size = distributed.per_rank_batch(cfg.data.batch_size, world)
    if size % cfg.optim.accumulate:
        raise ValueError(f"the per-rank batch {size} is not divisible by optim.accumulate={cfg.optim.accumulate}")
    return size


def load_splits(cfg: Config, world: distributed.World) -> Splits:
    """The data; rank 0 loads it first (it writes the embedded dataset once), the other ranks then read it."""
    splits = load(cfg.data) if world.is_main else None
    distributed.barrier(world)
    return splits or load(cfg.data)


def build(cfg: Config, splits: Splits, world: distributed.World, sharded: bool) -> FusionModel:
    """The model on this rank's device; `sharded`: each rank holds a block of every head's centres (here, not
    in research/torch/model.py: a rank's block depends on the world)."""
    model, notes = backend.new_model(cfg, splits)
    if world.is_main:
        print("".join(f"weights: {note}\n" for note in notes), end="")
    if sharded:
        sharding.shard_heads(model, len(splits.classes[cfg.data.target]), cfg.loss.sample_rate, world)
    return model.to(world.device)


def resume(cfg: Config, last: Path, trained: tuple, tracker, world: distributed.World, name: str):
    """(begin, progress) from the `last` checkpoint (research/training.py resume_point), its state loaded into
    `trained` (model, optimizer, scheduler; each rank its block of sharded centres), the record cut back to
    its epoch; a fresh start without one. Every rank reads it: the run directory is on a shared file system.
    `trained` is (model, optimizer, scheduler, the weight average's model or None)."""
    if not (cfg.run.resume and checkpoint_files.exists(last)):
        return resume_point(fresh_progress())
    model, optimizer, scheduler, averaged = trained
    own = partial(sharding.own_state, model, optimizer)
    progress = checkpoint.load(last, model, optimizer, scheduler, own=own, ema=averaged)
    tracker.truncate(progress["epoch"])
    if world.is_main:
        print(f"resuming {name}: epoch {progress['epoch']} done, {progress['step']} steps into the next")
    return resume_point(progress)


def validate(model: FusionModel, splits: Splits, cfg: Config, world: distributed.World, sharded: bool) -> dict:
    """The epoch's validation metrics: each rank predicts its shard of the split, gathered into split order;
    with sharded centres every rank predicts the whole split (the heads' collectives need the same batches
    on every rank)."""
    shard = {} if sharded else {"rank": world.rank, "world": world.size}
    preds = predict(model, splits.val, cfg, world.device, **shard)
    preds = preds if sharded else distributed.gather_predictions(preds, world)
    return val_metrics(preds, np.unique(splits.train.labels("subject")), cfg)


def train_and_evaluate(cfg: Config, run_dir: Path, name: str) -> dict:
    """Train, select the best validation epoch, evaluate it on val and test; return the run summary. Under
    torchrun every rank trains on its shard and rank 0 alone writes and evaluates, the others return
    {"status": "worker"} (research/torch/distributed.py, sharding.py: checkpoints hold whole matrices)."""
    started = time.time()
    world = distributed.init(cfg.run.device)
    name, run_dir = distributed.broadcast((name, run_dir), world)  # rank 0's, whose clock named the run
    torch.manual_seed(cfg.run.seed)
    device = world.device
    splits = load_splits(cfg, world)
    sharded = cfg.loss.shard_centres and world.size > 1  # on one process: the ordinary heads (docs/scaling.md)
    model = build(cfg, splits, world, sharded)
    optimizer = make_optimizer(model, cfg)
    steps = steps_per_epoch(splits.train, cfg)
    scheduler = warmup_cosine(optimizer, round(cfg.optim.warmup_epochs * steps), cfg.optim.epochs * steps)
    size = rank_batch(cfg, world)
    job = distributed.describe(world, size)
    tracker = distributed.main_tracker(world, cfg, run_dir, name)
    tracker.record |= job
    last, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"
    averaged = ema.make(model, cfg.optim.ema)  # optim.ema: validated, kept as best and averaged over epochs
    evaluated = ema.evaluated(model, averaged)
    begin, progress = resume(cfg, last, (model, optimizer, scheduler, averaged), tracker, world, name)

    def write(path: Path, meta: dict, resumable: bool) -> None:
        """Rank 0 writes a checkpoint as a one-process run has it (every rank sends its sharded centres): the
        trained weights, optimizer and weight average (`last`), or the evaluated weights only."""
        parts = (model, optimizer, scheduler) if resumable else (evaluated, None, None)
        model_state, optim_state = sharding.full_state(parts[0], parts[1], world)
        average = sharding.full_state(averaged, None, world)[0] if resumable and averaged is not None else None
        if world.is_main:
            checkpoint.save(path, model_state, meta, optim_state, parts[2], average)
            checkpoint_files.settle(path, cfg.run.keep)

    def save(step: int, pipeline: dict, loss_sum: float) -> None:
        """A mid-epoch `last`: progress["epoch"] is still the last completed epoch."""
        write(last, progress | {"step": step, "pipeline": pipeline, "loss_sum": loss_sum}, resumable=True)

    trained = distributed.wrap(model, world, cfg.run.sync_bn)
    trained = torch.compile(trained) if cfg.run.compile else trained
    after = None if averaged is None else partial(ema.update, averaged, model, cfg.optim.ema)
    step = make_step(trained, optimizer, scheduler, cfg, world, after)
    epoch_kw = {"size": size, "shard": {"rank": world.rank, "world": world.size}, "last": last, "save": save}
    epoch_kw |= {"tracker": tracker}
    try:
        with finishing(tracker, name), setup_frozen():
            for epoch in range(progress["epoch"] + 1, cfg.optim.epochs + 1):
                trained.train()
                train_loss = train_epoch(step, splits.train, cfg, epoch, begin=begin, **epoch_kw)
                begin = None
                val = validate(evaluated, splits, cfg, world, sharded)
                metrics = {"train/loss": train_loss, "lr": scheduler.get_last_lr()[0]}
                keep = partial(write, meta={"epoch": epoch}, resumable=False)
                averaging.keep_epoch(run_dir, epoch, cfg.eval.average_last, keep, world.is_main)
                save_best = partial(write, best_path, resumable=False)
                end_epoch(progress, epoch, val, metrics, tracker, save_best, partial(write, last, resumable=True))
                if stop_here(epoch, cfg, tracker):
                    return {"status": "interrupted", "epoch": epoch}
                if converged(epoch, progress, cfg):
                    break
    finally:
        distributed.close(world)
    if not world.is_main:
        return {"status": "worker"}
    if sharded:  # the checkpoint holds the whole centre matrix; rank 0 evaluates as one process
        model = build(cfg, splits, world, sharded=False)
    load_weights(model, averaging.final_weights(run_dir, cfg.eval.average_last, progress))
    summary = final_report(backend, model, splits, cfg, device, run_dir / "eval", tracker.record["history"])
    tracker.images(images(run_dir / "eval"))
    checkpoint_files.prune(run_dir, cfg.run.keep)
    return finish(tracker, summary, parameter_report(model), progress, splits, started)
