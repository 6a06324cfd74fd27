"""The framework-free parts of training that both trainers (research/torch/, research/jax/) share: epoch
length, class weights, per-epoch validation metrics, the epoch loop around the backend's step, the best-epoch
and resume bookkeeping, and finishing the record (also on an exception)."""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from research.config import Config
from research.data.loader import SampleSet, Splits
from research.metrics import crossmodal, lower_is_better
from research.metrics.verification import verify
from research.tracking import Tracker


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


def steps_per_epoch(data: SampleSet, cfg: Config) -> int:
    """Full batches per epoch: the last partial batch is dropped in both backends, because a fixed batch
    shape is what lets the jax step compile once; each epoch's order is a new permutation, so the dropped
    samples differ from epoch to epoch."""
    if len(data) < cfg.data.batch_size:
        raise ValueError(f"the training split has {len(data)} samples, fewer than one batch ({cfg.data.batch_size})")
    return len(data) // cfg.data.batch_size


def class_weights(cfg: Config, labels: np.ndarray, classes: int) -> np.ndarray | None:
    """`balanced`: w_c = N / (C * n_c) over the training labels (classes absent from train get weight 0)."""
    if cfg.loss.class_weights == "none":
        return None
    counts = np.bincount(labels[labels >= 0], minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def quick_metrics(preds: dict) -> dict[str, float]:
    """Loss and accuracy over samples whose class was seen in training (per-epoch validation)."""
    known = preds["target"] >= 0
    if not known.any() or "log_probs" not in preds:  # unseen classes, or a model without a classifier
        return {}
    correct = preds["log_probs"][known].argmax(-1) == preds["target"][known]
    return {"loss": float(preds["loss"]), "acc": float(correct.mean())}


def val_metrics(preds: dict, train_subjects: np.ndarray, cfg: Config) -> dict[str, float]:
    """Accuracy when the split's classes were seen in training and the model has a classifier, else open-set
    verification EER: of the embedding, or in a match model (model.task = match) of face against voice on
    the samples that have both."""
    metrics = quick_metrics(preds)
    if metrics:
        return metrics
    if cfg.model.task == "match":
        both = preds["face_present"] & preds["voice_present"]
        face, voice, subjects = preds["face_embedding"][both], preds["voice_embedding"][both], preds["subject"][both]
        result = crossmodal.verification(face, voice, subjects, n_trials=cfg.eval.trials, seed=cfg.run.seed)
    else:
        result, _ = verify(
            preds["embedding"], preds["subject"], train_subjects, n_trials=cfg.eval.trials, seed=cfg.run.seed
        )
    return {"loss": float("nan"), "eer": result["eer"]}


def is_better(value: float, best: float | None, key: str) -> bool:
    return best is None or (value < best if lower_is_better(key) else value > best)


def fresh_progress() -> dict:
    """The bookkeeping a trainer keeps in its `last` checkpoint's meta, before the first epoch: "epoch" (the
    last completed epoch), "step" (steps done in the next one; 0 at an epoch's end) and the best epoch's
    "best" (value), "best_epoch" and "selection" (`val/acc` or `val/eer`)."""
    return {"epoch": 0, "step": 0, "best": None, "best_epoch": 0, "selection": ""}


def resume_point(progress: dict) -> tuple[dict | None, dict]:
    """(begin, progress) from a `last` checkpoint's meta: `begin` is the meta itself when it was written
    mid-epoch (train_epoch continues epoch progress["epoch"] + 1 from it), else None; `progress` keeps the
    epoch and best-epoch bookkeeping, at step 0."""
    begin = progress if progress["step"] else None
    return begin, {k: progress[k] for k in ("epoch", "best", "best_epoch", "selection")} | {"step": 0}


def train_epoch(
    step, data: SampleSet, cfg: Config, epoch: int, *, size: int, shard: dict, last: Path, save, begin, tracker
):
    """One pass over the training set; returns the mean loss over the global batches. Raises NonFiniteLoss
    before a bad step.

    `step(batch, number)` trains on one NumPy batch (`number`: the run's steps before it) and returns the
    step's measurements {"loss" (the global batch's), "grad_norm", "lr"}. Batches have `size` rows, `shard`
    ({"rank", "world"} or {}) picks this rank's. `begin` is a mid-epoch checkpoint's meta (or None): the epoch's
    iterator continues from its "pipeline" state after "step" steps, with the loss sum so far. Every
    run.checkpoint_every steps (not at the epoch's end, whose checkpoint follows the validation) `save(step,
    pipeline state, loss sum)` is called; every run.log_every steps the tracker logs the step (`StepLog`)."""
    done, total = (begin["step"], begin["loss_sum"]) if begin else (0, 0.0)
    steps, every = steps_per_epoch(data, cfg), cfg.run.checkpoint_every
    step_log = StepLog(tracker, cfg, epoch)
    kw = {"shuffle": True, "seed": cfg.run.seed, "epoch": epoch, "train": True, **shard}
    with data.batches(size, **kw) as batches:
        if begin:
            batches.set_state(begin["pipeline"])
        full = (b for b in batches if len(b["target"]) == size)  # short only with skipped files
        bar = tqdm(
            itertools.islice(full, steps - done),
            initial=done,
            total=steps,
            desc=f"epoch {epoch}/{cfg.optim.epochs}",
            disable=not cfg.run.progress,
            leave=False,
        )
        for number, batch in enumerate(bar, start=done + 1):  # number: steps done once this one is
            measured = step(batch, (epoch - 1) * steps + number - 1)
            loss = measured["loss"]
            if not math.isfinite(loss):
                raise NonFiniteLoss(
                    f"non-finite loss ({loss}) at epoch {epoch}, step {number - 1}: stopped before updating the "
                    f"weights; the last good checkpoint is {last if last.exists() else 'none yet'}"
                )
            total += loss
            step_log((epoch - 1) * steps + number, measured)
            bar.set_postfix(loss=f"{total / number:.4f}")
            if every > 0 and number % every == 0 and number < steps:
                tracker.write()  # the steps logged so far, before the checkpoint that resumes after them
                save(number, batches.get_state(), total)
    return total / number


class StepLog:
    """Every run.log_every steps (of the run), the step's loss, learning rate and gradient norm, and the training
    samples/s since the last log (global batches, data loading included), to the tracker (0: off)."""

    def __init__(self, tracker: Tracker, cfg: Config, epoch: int):
        self.tracker, self.every, self.batch, self.epoch = tracker, cfg.run.log_every, cfg.data.batch_size, epoch
        self.since, self.count = time.perf_counter(), 0

    def __call__(self, step: int, measured: dict[str, float]) -> None:
        self.count += 1
        if self.every <= 0 or step % self.every:
            return
        rate = self.count * self.batch / (time.perf_counter() - self.since)
        keys = {"loss": "train/step_loss", "lr": "train/lr", "grad_norm": "train/grad_norm"}
        metrics = {keys[k]: float(v) for k, v in measured.items() if k in keys} | {"train/samples_per_s": rate}
        self.tracker.log_step(metrics, step, self.epoch)
        self.since, self.count = time.perf_counter(), 0


def end_epoch(progress: dict, epoch: int, val: dict, metrics: dict, tracker: Tracker, save_best, save_last) -> None:
    """After an epoch's validation: the best epoch kept by the validation metric (`save_best(meta)` writes
    its model), the epoch logged, then `save_last(progress)` writes the resumable checkpoint."""
    key = "acc" if "acc" in val else "eer"
    if is_better(val[key], progress["best"], key):
        progress.update(best=val[key], best_epoch=epoch, selection=f"val/{key}")
        save_best({"epoch": epoch, f"val/{key}": val[key]})
    progress["epoch"] = epoch
    # The record first, then the checkpoint: a run killed between the two resumes from the previous
    # checkpoint and replays this epoch (truncating the record); the other order would lose it.
    tracker.log(metrics | {f"val/{k}": v for k, v in val.items()}, epoch)
    save_last(progress)


def stop_here(epoch: int, cfg: Config, tracker: Tracker) -> bool:
    """True (and the record marked interrupted) when run.stop_after_epoch asks to stop after this epoch."""
    if epoch == cfg.run.stop_after_epoch and epoch < cfg.optim.epochs:
        tracker.finish("interrupted")
        return True
    return False


def converged(epoch: int, progress: dict, cfg: Config) -> bool:
    """True when optim.patience > 0 and the validation metric has not improved for that many epochs: the
    run has converged and stops (its best epoch is evaluated as after the last epoch)."""
    return cfg.optim.patience > 0 and epoch - progress["best_epoch"] >= cfg.optim.patience


@contextlib.contextmanager
def setup_frozen():
    """The block of the training loop: every object alive when it starts (the model, the data, the optimizer's
    state, the frameworks' modules: 550,000-660,000 objects for the default model) stays out of the cyclic
    garbage collector's full passes until it ends (gc.freeze). A full pass over them takes 400-565 ms, and
    the ~3,500 pytree objects that each jax step creates and drops set one off every 50-75 steps: 6-10 ms a
    step on average on the stack-fusion model's 55-80 ms step; frozen, such a pass takes 0.5-2 ms
    (docs/training.md, "Measured"). The frozen objects are handed back to the collector at the end, so that a
    process running several trainings (the tests) frees them."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def finishing(tracker: Tracker, name: str):
    """The training loop's block: when it raises, the record says so ("interrupted" on Ctrl-C, with how to
    resume; "failed" with the error) before the exception goes on."""
    try:
        yield
    except KeyboardInterrupt:
        tracker.finish("interrupted", error=f"interrupted; rerun with --run.name={name} to resume")
        raise
    except Exception as err:
        tracker.finish("failed", error=f"{type(err).__name__}: {err}")
        raise


def finish(tracker: Tracker, summary: dict, parameters: dict, progress: dict, splits: Splits, started: float) -> dict:
    """The run's summary (the report's metrics, parameter counts, the selected and the last trained epoch,
    skipped samples, wall time), the record finished with it."""
    summary = (
        summary
        | parameters
        | {
            "best_epoch": progress["best_epoch"],
            "last_epoch": progress["epoch"],
            "selection": progress["selection"],
            "skipped_samples": splits.skipped,
            "wall_time_s": time.time() - started,
        }
    )
    tracker.finish("finished", summary)
    return summary
