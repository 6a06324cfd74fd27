"""JAX trainer: `train_and_evaluate(cfg, run_dir, name)` trains encoders + fusion + heads jointly.

A thin loop around one jit-compiled `train_step`, reading like research/torch/trainer.py: AdamW, linear
warm-up then cosine decay per step (torch's factors), global-norm clipping, optional bf16 matmuls,
validation every epoch, the best epoch kept by the validation metric, and a `last` checkpoint after
every epoch (and every `run.checkpoint_every` steps inside one) from which a rerun resumes exactly (same
batches, same dropout and SpecAugment masks, mid-epoch too).

The model is split once into its graph definition and its state (params, other variables, optimizer
state); the step is `jax.jit` of a pure function of that state (donated), one batch and the step number,
and compiles once per run: every batch has the same shape (the last partial batch is dropped, in torch
too). Data parallel over a (data, model) mesh of every visible device: the batch is split over all of it
and the state replicated (research/jax/distributed.py), so XLA inserts the gradient all-reduce. With
loss.shard_centres the "model" axis spans every device (Partial FC's layout: each device reads B / N samples
and holds C / N class centres): the heads' centres and their Adam moments are split along it, and the step
computes the heads' loss with losses/jax/sharded.py (research/jax/sharding.py).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from research import averaging, checkpoint_files
from research.config import Config
from research.data.loader import Splits, load
from research.jax import backend, checkpoint, distributed, ema, sharding
from research.jax.model import FusionModel, load_weights, parameter_report, variables
from research.jax.predict import predict, to_device
from research.plots import images
from research.report import final_report
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

# XLA:CPU's default copy insertion copies every Adam moment each step (364 copies for the late-fusion model):
# the moment's donated buffer is overwritten in place while the parameter's update and the non-finite guard
# still read the old value. Its region-based live-range analysis orders those reads first instead: no copy
# (the optimizer's part of the step: docs/training.md, "Measured", item 6).
CPU_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def make_optimizer(schedule: optax.Schedule, cfg: Config) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with weight decay on matrices only (not on biases, norms and
    embeddings of one dimension), with torch's AdamW defaults (betas 0.9/0.999, eps 1e-8); with
    optim.encoder_lr_scale != 1 the encoders' updates are scaled by it."""
    decay = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    adamw = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.optim.weight_decay, mask=decay)
    clip = optax.clip_by_global_norm(cfg.optim.clip) if cfg.optim.clip > 0 else optax.identity()
    if cfg.optim.encoder_lr_scale == 1.0:  # only then: the optimiser state of a checkpoint written without it
        return optax.chain(clip, adamw)
    # AdamW's update is -lr (adam + wd p): scaling it scales the learning rate, as torch's encoder groups do.
    encoders = optax.masked(optax.scale(cfg.optim.encoder_lr_scale), in_encoders)
    return optax.chain(clip, adamw, encoders)


def in_encoders(params):
    """A tree like `params`: True for the encoders' leaves."""
    first = lambda path: next(k.key for k in path if isinstance(k, jax.tree_util.DictKey))  # noqa: E731
    return jax.tree_util.tree_map_with_path(lambda path, _: first(path) == "encoders", params)


def warmup_cosine(lr: float, warmup: int, total: int) -> optax.Schedule:
    """lr factor: linear from 1/warmup to 1 over `warmup` steps, then cosine to 0 at `total`."""

    def schedule(step: jax.Array) -> jax.Array:
        progress = (step - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(1.0, progress)))
        return lr * jnp.where(step < warmup, (step + 1) / max(warmup, 1), cosine)

    return schedule


def train_state(model: nnx.Module, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, nnx.State, dict]:
    """(graph definition in train mode, RNG streams, train state): the state is every array that training
    changes, {"params", "variables" (BatchNorm statistics, counters), "optim"}, and all a checkpoint holds.
    The RNG streams are reseeded from (seed, step) in every step, so they are not part of it."""
    model.train()
    graphdef, params, rng_state, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)  # rest: variables(model)
    return graphdef, rng_state, {"params": params, "variables": rest, "optim": tx.init(params)}


def make_train_step(graphdef: nnx.GraphDef, rngs: nnx.State, tx, schedule, cfg: Config, mesh: Mesh, shardings=None):
    """The jitted step `(state, batch, step) -> (state, measurements)`: forward, loss, gradient,
    clipping, AdamW, and the weight average when the state has one ("ema", optim.ema). A non-finite loss
    leaves the state as it was (the loop then stops the run). The new state is laid out as `shardings`
    (state_shardings; None: replicated)."""
    seed = jax.random.key(cfg.run.seed)

    def train_step(state: dict, batch: dict[str, jax.Array], step: jax.Array) -> tuple[dict, dict]:
        key = jax.random.fold_in(seed, step)
        k_dropout, k_augment = jax.random.split(key)

        def loss_fn(params):  # copy=True: fresh Variables, which NNX lets the forward pass mutate under grad
            model = nnx.merge(graphdef, params, rngs, state["variables"], copy=True)
            nnx.reseed(model, dropout=k_dropout, augment=k_augment)
            with sharding.step_heads(model, cfg, mesh, key):  # loss.shard_centres: heads split along "model"
                loss = model(batch)["loss"]
            return loss, variables(model)  # BatchNorm statistics, counters

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, optim = tx.update(grads, state["optim"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "variables": stats, "optim": optim}
        if "ema" in state:
            new["ema"] = ema.update(state["ema"], new, cfg.optim.ema)
        new = jax.tree.map(lambda a, b: jnp.where(jnp.isfinite(loss), a, b), new, state)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step)}

    replicated = NamedSharding(mesh, PartitionSpec())
    options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    out_shardings = (shardings or replicated, replicated)
    return jax.jit(train_step, donate_argnums=0, out_shardings=out_shardings, compiler_options=options)


def build(cfg: Config, splits: Splits, mesh: Mesh) -> FusionModel:
    """The model; with loss.shard_centres its heads' classes must split evenly over the mesh's "model" axis."""
    classes = len(splits.classes[cfg.data.target])
    if cfg.loss.shard_centres and classes % mesh.shape["model"]:
        raise ValueError(f"loss.shard_centres: {classes} classes do not split over {mesh.shape['model']} devices")
    model, notes = backend.new_model(cfg, splits)
    if jax.process_index() == 0:
        print("".join(f"weights: {note}\n" for note in notes), end="")
    return model


def resume(cfg: Config, last: Path, state: dict, tracker, name: str) -> tuple[dict, tuple[dict | None, dict]]:
    """(state, (begin, progress)) from the `last` checkpoint (research/training.py resume_point), the record cut
    back to its epoch; the fresh state and a fresh start without one."""
    if not (cfg.run.resume and checkpoint_files.exists(last)):
        return state, resume_point(fresh_progress())
    state, progress = checkpoint.load(last, state)
    tracker.truncate(progress["epoch"])
    print(f"resuming {name}: epoch {progress['epoch']} done, {progress['step']} steps into the next")
    return state, resume_point(progress)


def validate(model: FusionModel, splits: Splits, cfg: Config, mesh: Mesh) -> dict:
    """The epoch's validation metrics (the model holds the epoch's weights), the model back in train mode."""
    val = val_metrics(predict(model, splits.val, cfg, mesh), np.unique(splits.train.labels("subject")), cfg)
    model.train()
    return val


def train_and_evaluate(cfg: Config, run_dir: Path, name: str) -> dict:
    """Train, select the best validation epoch, evaluate it on val and test; return the run summary."""
    started = time.time()
    distributed.init()
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = distributed.make_mesh(jax.device_count() if cfg.loss.shard_centres else 1)
    splits = load(cfg.data)
    model = build(cfg, splits, mesh)
    steps = steps_per_epoch(splits.train, cfg)
    schedule = warmup_cosine(cfg.optim.lr, round(cfg.optim.warmup_epochs * steps), cfg.optim.epochs * steps)
    tx = make_optimizer(schedule, cfg)
    graphdef, rng_state, state = train_state(model, tx)
    if cfg.optim.ema:  # the weight average: validated, kept as best and averaged over epochs
        state["ema"] = ema.make(state, cfg.optim.ema)
    shardings = sharding.state_shardings(state, mesh, cfg)
    train_step = make_train_step(graphdef, rng_state, tx, schedule, cfg, mesh, shardings)
    tracker = distributed.main_tracker(cfg, run_dir, name)
    last, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"
    state, (begin, progress) = resume(cfg, last, state, tracker, name)
    state = distributed.place(state, shardings)

    def write(path: Path, meta: dict, resumable: bool) -> None:
        """Process 0 writes a checkpoint (research/jax/checkpoint.py): the whole train state (`last`), or the
        evaluated weights only."""
        checkpoint.save(path, state if resumable else ema.evaluated(state), meta)
        if jax.process_index() == 0:
            checkpoint_files.settle(path, cfg.run.keep)

    def save(step: int, pipeline: dict, loss_sum: float) -> None:
        """A mid-epoch `last`: progress["epoch"] is still the last completed epoch."""
        write(last, progress | {"step": step, "pipeline": pipeline, "loss_sum": loss_sum}, resumable=True)

    def step(batch: dict, number: int) -> dict[str, float]:
        """One update on a global batch laid over the mesh, the run's step `number` seeding its randomness;
        the step's measurements (loss, gradient norm, learning rate)."""
        nonlocal state
        state, measured = train_step(state, to_device(batch, mesh), number)
        return {k: float(v) for k, v in measured.items()}

    epoch_kw = {"size": cfg.data.batch_size, "shard": {}, "last": last, "save": save, "tracker": tracker}
    with finishing(tracker, name), setup_frozen():
        for epoch in range(progress["epoch"] + 1, cfg.optim.epochs + 1):
            train_loss = train_epoch(step, splits.train, cfg, epoch, begin=begin, **epoch_kw)
            begin = None
            nnx.update(model, ema.evaluated(state)["params"], ema.evaluated(state)["variables"])
            val = validate(model, splits, cfg, mesh)
            metrics = {"train/loss": train_loss, "lr": float(schedule(epoch * steps))}
            keep = partial(write, meta={"epoch": epoch}, resumable=False)
            averaging.keep_epoch(run_dir, epoch, cfg.eval.average_last, keep, jax.process_index() == 0)
            save_best = partial(write, best_path, resumable=False)
            end_epoch(progress, epoch, val, metrics, tracker, save_best, partial(write, last, resumable=True))
            if stop_here(epoch, cfg, tracker):
                return {"status": "interrupted", "epoch": epoch}
            if converged(epoch, progress, cfg):
                break
    load_weights(model, averaging.final_weights(run_dir, cfg.eval.average_last, progress))
    summary = final_report(backend, model, splits, cfg, mesh, run_dir / "eval", tracker.record["history"])
    tracker.images(images(run_dir / "eval"))
    checkpoint_files.prune(run_dir, cfg.run.keep)
    return finish(tracker, summary, parameter_report(model), progress, splits, started)
