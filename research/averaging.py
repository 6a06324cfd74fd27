"""Checkpoint averaging (eval.average_last = k), framework-free: the trainers keep the evaluated weights of
the last k epochs (RUN/epoch_N.safetensors, older ones pruned as each new one is written) and after training
average them into RUN/averaged.safetensors, which the end-of-run report evaluates in place of the best epoch
(the record's summary says so: "selection"). experiments/average.py does the same offline.

Every floating array is the mean of the k files' (BatchNorm running statistics included), an integer array
(BatchNorm's num_batches_tracked, step counters) is the last file's, as WeSpeaker's average_model.py does. The
files are either backend's checkpoints (torch `model/...`, jax pytree paths): the arrays are read by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from research.checkpoint_files import CheckpointError, content_hash, previous, publish, readable

EPOCH = re.compile(r"epoch_(\d+)\.safetensors")


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / f"epoch_{epoch}.safetensors"


def epoch_files(run_dir: Path) -> dict[int, Path]:
    """{epoch: its file} of the epoch checkpoints in a run directory (previous copies left out)."""
    found = {int(m.group(1)): p for p in run_dir.glob("epoch_*.safetensors") if (m := EPOCH.fullmatch(p.name))}
    return dict(sorted(found.items()))


def prune_epochs(run_dir: Path, epoch: int, k: int) -> None:
    """After epoch `epoch`'s file is written: remove the files of epochs before the last k."""
    for number, path in epoch_files(run_dir).items():
        if number <= epoch - k:
            path.unlink(missing_ok=True)
            previous(path).unlink(missing_ok=True)


def average(paths: list[Path], out: Path, meta: dict | None = None) -> None:
    """Write the mean of the checkpoints `paths` (floating arrays; integers: the last file's) to `out`."""
    if not paths:
        raise ValueError("no checkpoints to average")
    files = [readable(path, read) for path in paths]
    names = files[0][0].keys()
    for path, (arrays, _) in zip(paths, files, strict=True):
        if arrays.keys() != names:
            raise ValueError(f"{path} holds other arrays than {paths[0]}: not checkpoints of one model")
    mean = {}
    for name in names:
        stack = [arrays[name] for arrays, _ in files]
        last = stack[-1]
        floating = np.issubdtype(last.dtype, np.floating)
        # np.asarray: the mean of 0-d arrays (a learned temperature) is a NumPy scalar, which safetensors refuses
        mean[name] = (
            np.asarray(np.mean(np.stack(stack), axis=0, dtype=np.float64)).astype(last.dtype) if floating else last
        )
    meta = (meta or {}) | {"averaged": [str(p) for p in paths]}
    header = {"extra": json.dumps({"meta": meta}), "sha256": content_hash({k: v.tobytes() for k, v in mean.items()})}
    publish(out, lambda tmp: save_file(mean, str(tmp), metadata=header))


def final_weights(run_dir: Path, k: int, progress: dict) -> Path:
    """The checkpoint the end-of-run report evaluates: with eval.average_last = k the average of the last k
    epochs' files (written now; progress["selection"] then says so), else the best epoch's."""
    if k <= 0:
        return run_dir / "best.safetensors"
    epochs = list(epoch_files(run_dir).items())[-k:]
    out = run_dir / "averaged.safetensors"
    average([p for _, p in epochs], out, {"epochs": [e for e, _ in epochs]})
    progress["selection"] = f"average of epochs {epochs[0][0]}-{epochs[-1][0]}"
    return out


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, extra) of one checkpoint file; CheckpointError when its content does not match its hash."""
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    if content_hash({k: np.ascontiguousarray(v).tobytes() for k, v in arrays.items()}) != header["sha256"]:
        raise CheckpointError(f"{path}: content does not match its sha256 (corrupt file)")
    return arrays, json.loads(header["extra"])


def keep_epoch(run_dir: Path, epoch: int, k: int, write, main: bool = True) -> None:
    """eval.average_last = k > 0: `write(path)` the epoch's evaluated weights (every rank calls it: a collective
    under sharded centres), and the main process prunes the files of epochs before the last k."""
    if k <= 0:
        return
    write(epoch_path(run_dir, epoch))
    if main:
        prune_epochs(run_dir, epoch, k)
