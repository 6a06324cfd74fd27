"""How both trainers put a checkpoint file on disk and find a good one again (framework-free).

A checkpoint is one safetensors file whose header also holds the JSON meta, so one rename publishes it
whole: no moment exists at which weights and meta disagree. `publish` writes a temporary file, fsyncs it,
keeps the checkpoint it replaces as `NAME.previous.safetensors`, renames, and fsyncs the folder, so a crash
at any point leaves the old checkpoint, the new one, or both. `readable` returns the newest of the two that
opens and whose content hash matches the one written in its header; a truncated or corrupt file is skipped
with a warning, and when neither is good the error names both files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors import safe_open

log = logging.getLogger(__name__)
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """No readable checkpoint where one was expected."""


def previous(path: Path) -> Path:
    """The checkpoint that `path` replaced last: run/last.safetensors -> run/last.previous.safetensors."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def exists(path: Path) -> bool:
    """Whether a checkpoint to resume from is there: `path`, or the previous one when a crash came between
    the two renames of `publish`."""
    return path.exists() or previous(path).exists()


def publish(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) to create the new file, then make it `path` atomically and durably.

    A failed write (a full disk: safetensors' SafetensorError or an OSError) is a one-line CheckpointError
    naming `path`; the temporary file is removed and the checkpoints already there are left as they were."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
    except Exception as err:  # noqa: BLE001 - whatever the writer raises, the message names the file
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {one_line(err)}") from err
    if path.exists():
        os.replace(path, previous(path))
    os.replace(tmp, path)
    _fsync(path.parent)


def settle(path: Path, keep: str) -> None:
    """After `publish` (run.keep): the previous copy goes at once unless every checkpoint is kept."""
    if keep != "all":
        previous(path).unlink(missing_ok=True)


def prune(run_dir: Path, keep: str) -> None:
    """At the end of a finished run (run.keep): best = the evaluated model only (best, or averaged with
    eval.average_last; the epochs' files go), none = no checkpoint at all."""
    epochs = [
        p.name.removesuffix(".safetensors") for p in run_dir.glob("epoch_*.safetensors") if ".previous" not in p.name
    ]
    names = {"all": [], "best": ["last", *epochs], "none": ["last", "best", "averaged", *epochs]}[keep]
    for name in names:
        for path in (run_dir / f"{name}.safetensors", previous(run_dir / f"{name}.safetensors")):
            path.unlink(missing_ok=True)


def content_hash(arrays: dict[str, bytes]) -> str:
    """sha256 over the sorted keys and raw bytes of a checkpoint's arrays (stored in its header)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(arrays[key])
    return h.hexdigest()


def readable(path: Path, read: Callable[[Path], T]) -> T:
    """read(path), or read(previous(path)) when `path` is missing, truncated or corrupt.

    `read` raises on a bad file (safetensors' own errors, or CheckpointError on a hash mismatch).
    """
    problems, result, used = _first_readable(path, read)
    if used is None:
        raise CheckpointError("no readable checkpoint: " + "; ".join(problems))
    if problems:
        log.warning("checkpoint %s is unreadable (%s); using %s", path, problems[0], used)
    return result


def unreadable(path: Path) -> list[str]:
    """Why neither `path` nor its previous copy opens as a safetensors file ([] when one does). Reads the headers
    only, so it is quick: a pickle renamed .safetensors, zeros or a cut-off header. A file whose content does not
    match its hash opens here and is refused by `readable`."""
    problems, _, used = _first_readable(path, _open_header)
    return [] if used is not None else problems


def _first_readable(path: Path, read: Callable[[Path], T]) -> tuple[list[str], T | None, Path | None]:
    """(problems of the copies tried before, read's result, the copy it came from) for the first of `path` and
    its previous copy that `read` accepts; (problems of both, None, None) when neither does."""
    problems = []
    for candidate in (path, previous(path)):
        if not candidate.exists():
            problems.append(f"{candidate}: missing")
            continue
        try:
            return problems, read(candidate), candidate
        except Exception as err:  # noqa: BLE001 - any failure to read means: try the older checkpoint
            problems.append(f"{candidate}: {one_line(err)}")
    return problems, None, None


def _open_header(path: Path) -> None:
    with safe_open(str(path), framework="numpy"):
        pass


def one_line(err: BaseException) -> str:
    """`Type: message` of an exception on one line (a reason for a run record or an `error:` line)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
