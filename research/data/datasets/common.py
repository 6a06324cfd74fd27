"""What every dataset adapter shares: options, the result, meta-file tables, parallel probing, splits.

An adapter is `prepare(root, opts) -> Prepared`: it reads the dataset as distributed, checks it and
returns the manifest rows (paths relative to `opts.out`'s folder), the sidecar and the numbers of what
it skipped. Nothing is written until every check has passed (experiments/prepare.py writes).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from research.data.manifest import DataError, Meta, Row


@dataclass
class Options:
    out: Path  # the manifest to write; row paths are relative to its folder
    workers: int = 1  # processes that probe files
    on_error: str = "raise"  # raise = stop at the first bad file or line; skip = drop it and count it
    val_fraction: float = 0.1  # share of the training identities held out as the open split's val part
    fps: float = 1.0  # firstimpressions: face frames (samples) per second of video
    faces: Path | None = None  # face + voice joins: the root of the face dataset
    test_root: Path | None = None  # voxceleb2-voxceleb1: VoxCeleb1's root (the test data)
    faces_from_video: bool = False  # voxceleb2: each utterance's face is its .mp4 (dev|test/mp4/)
    progress: bool = True


@dataclass
class Prepared:
    rows: list[Row]
    meta: Meta = field(default_factory=Meta)
    numeric: dict[str, list] = field(default_factory=dict)  # column -> one number per row
    skipped: dict[str, int] = field(default_factory=dict)  # what was skipped (on_error = skip) -> count
    problems: list[str] = field(default_factory=list)  # the first few skip reasons


class Skips:
    """Raise a DataError, or (on_error = skip) count it under a reason and keep the first messages."""

    def __init__(self, on_error: str):
        self.on_error, self.counts, self.messages = on_error, {}, []

    def __call__(self, reason: str, message: str) -> None:
        if self.on_error == "raise":
            raise DataError(message)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.messages) < 5:
            self.messages.append(message)

    def result(self, rows: list[Row], meta: Meta, numeric: dict | None = None) -> Prepared:
        if not rows:
            raise DataError("no samples left to write" + (f" (skipped: {self.counts})" if self.counts else ""))
        return Prepared(rows, meta, numeric or {}, dict(self.counts), list(self.messages))


def need(path: Path, what: str) -> Path:
    """`path` must exist; else a DataError saying what the adapter expected there."""
    if not path.exists():
        raise DataError(f"{path} does not exist: expected {what}")
    return path


def read_table(path: Path, columns: Iterable[str], delimiter: str = ",") -> list[tuple[int, dict[str, str]]]:
    """A meta file with a header row -> [(line, {column: value})], values and names stripped of spaces.

    The header must name exactly `columns` (in any order): an unknown or missing column is a DataError
    naming the file and line 1, as is a row with the wrong number of fields (naming its line).
    """
    need(path, "a meta file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter, skipinitialspace=True)
        header = [h.strip() for h in next(reader, [])]
        unknown, missing = set(header) - set(columns), set(columns) - set(header)
        if unknown or missing:
            raise DataError(
                f"{path} line 1: unexpected header {header}"
                + (f"; unknown column(s) {sorted(unknown)}" if unknown else "")
                + (f"; missing column(s) {sorted(missing)}" if missing else "")
            )
        records = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DataError(f"{path} line {reader.line_num}: {len(values)} fields, header has {len(header)}")
            records.append((reader.line_num, {h: v.strip() for h, v in zip(header, values, strict=True)}))
    return records


def read_lines(path: Path, fields: int, what: str) -> list[tuple[int, list[str]]]:
    """A whitespace-separated list file (iden_split.txt, veri_test2.txt) -> [(line, fields)]."""
    need(path, what)
    found = []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != fields:
                raise DataError(f"{path} line {line}: expected {fields} fields ({what}), got {len(parts)}")
            found.append((line, parts))
    return found


GENDER = {"m": "male", "f": "female", "male": "male", "female": "female"}


def gender(value: str, where: str) -> str:
    if value.lower() not in GENDER:
        raise DataError(f"{where}: unknown gender '{value}' (expected m or f)")
    return GENDER[value.lower()]


def probe_all(paths: list[Path], probe: Callable[[Path], object], opts: Options, what: str) -> list[object]:
    """probe(path) for every path, in `opts.workers` processes with a progress bar, in order.

    A probe that raises DataError gives that error in its place (the adapter decides to raise or skip).
    """
    bar = dict(total=len(paths), desc=f"probing {what}", disable=not opts.progress, leave=False)
    if opts.workers <= 1:
        return [_safe(probe, p) for p in tqdm(paths, **bar)]
    with ProcessPoolExecutor(opts.workers) as pool:
        chunk = max(1, min(64, len(paths) // (4 * opts.workers)))
        return list(tqdm(pool.map(_safe, [probe] * len(paths), paths, chunksize=chunk), **bar))


def _safe(probe: Callable[[Path], object], path: Path) -> object:
    try:
        return probe(path)
    except DataError as err:
        return err


def relative(path: Path, out: Path) -> str:
    """`path` relative to the manifest's folder (what manifest paths are)."""
    return Path(os.path.relpath(path.resolve(), out.resolve().parent)).as_posix()


def open_splits(subjects: Iterable[str], test: set[str], val_fraction: float) -> dict[str, str]:
    """Identity-disjoint split: `test` subjects -> test; of the rest, in sorted order, every k-th -> val
    (k = 1 / val_fraction; the last one when that picks none of two or more), the others -> train."""
    rest = sorted(set(subjects) - test)
    every = max(1, round(1 / val_fraction)) if val_fraction > 0 else len(rest) + 1
    val = set(rest[every - 1 :: every]) or (set(rest[-1:]) if len(rest) >= 2 and val_fraction > 0 else set())
    return {s: "test" if s in test else "val" if s in val else "train" for s in {*rest, *test}}


def closed_splits(count: int) -> list[str]:
    """Closed-set split of one identity's `count` samples (in a fixed order): ~80/10/10, the last ones
    val then test (at least one each from 3 samples on; all train below)."""
    held = max(1, round(0.1 * count)) if count >= 3 else 0
    return ["train"] * (count - 2 * held) + ["val"] * held + ["test"] * held
