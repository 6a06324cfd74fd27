"""The manifest: one row per sample, the contract between a dataset and the loader.

A manifest is a CSV (with a header) or a JSONL file (one JSON object per line) with the columns in
`COLUMNS`. Paths are relative to the manifest's folder (absolute paths work too); an empty path means
the modality is missing for that sample. `open_split` may be absent from a real dataset's manifest:
then only the closed-set split is available. See docs/data.md.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields
from pathlib import Path

AGE_BINS: tuple[str, ...] = ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS: tuple[str, ...] = ("female", "male")
SPLITS: tuple[str, ...] = ("train", "val", "test")
COLUMNS: tuple[str, ...] = ("id", "subject", "split", "open_split", "face", "voice", "text", "age", "gender", "group")
OPTIONAL: tuple[str, ...] = ("open_split",)


class DataError(ValueError):
    """Bad input data: a malformed manifest, an unreadable file, an unknown label."""


@dataclass(frozen=True)
class Row:
    """One sample. `face`, `voice`, `text` are paths as written in the manifest ("" = missing)."""

    id: str
    subject: str
    split: str
    open_split: str | None
    face: str
    voice: str
    text: str
    age: str
    gender: str
    group: str
    line: int = 0  # line of the manifest the row was read from (for error messages); 0 = not read


def read(path: str | Path) -> list[Row]:
    """Read and check a .csv or .jsonl manifest; a bad row raises DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    if path.suffix == ".csv":
        header, records = _read_csv(path)
    elif path.suffix == ".jsonl":
        header, records = _read_jsonl(path)
    else:
        raise DataError(f"manifest {path}: unknown format '{path.suffix}' (use .csv or .jsonl)")
    missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL]
    if missing:
        raise DataError(f"manifest {path}: missing column(s) {', '.join(missing)}")
    rows = [_row(path, line, record, "open_split" in header) for line, record in records]
    if not rows:
        raise DataError(f"manifest {path} has no rows")
    ids = set()
    for row in rows:
        if row.id in ids:
            raise DataError(f"manifest {path} line {row.line}: duplicate id '{row.id}'")
        ids.add(row.id)
    return rows


def write(path: str | Path, rows: list[Row]) -> Path:
    """Write rows as .csv or .jsonl (by the suffix), columns in `COLUMNS` order."""
    path = Path(path)
    has_open = [r.open_split is not None for r in rows]
    if any(has_open) and not all(has_open):
        raise DataError(f"manifest {path}: give open_split for every row or for none")
    columns = COLUMNS if all(has_open) else tuple(c for c in COLUMNS if c != "open_split")
    records = [{c: getattr(r, c) for c in columns} for r in rows]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    else:
        raise DataError(f"manifest {path}: unknown format '{path.suffix}' (use .csv or .jsonl)")
    return path


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        records = []
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise DataError(f"manifest {path} line {line}: {len(values)} fields, header has {len(header)}")
            records.append((line, dict(zip(header, values, strict=True))))
    return header, records


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    records = []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"manifest {path} line {line}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"manifest {path} line {line}: expected a JSON object")
            records.append((line, record))
    # A JSONL file has no header: a column exists when every row has it.
    header = [c for c in COLUMNS if records and all(c in r for _, r in records)]
    for line, record in records:
        missing = [c for c in COLUMNS if c not in record and c not in OPTIONAL]
        if missing:
            raise DataError(f"manifest {path} line {line}: missing column(s) {', '.join(missing)}")
    return header, records


def _row(path: Path, line: int, record: dict, has_open: bool) -> Row:
    """Check one record's values and build its Row."""
    where = f"manifest {path} line {line}"
    values = {}
    for f in fields(Row):
        if f.name == "line" or (f.name == "open_split" and not has_open):
            continue
        value = record[f.name]
        if not isinstance(value, str):
            raise DataError(f"{where}: column '{f.name}' must be a string, got {value!r}")
        values[f.name] = value.strip()
    for name in ("id", "subject", "group"):
        if not values[name]:
            raise DataError(f"{where}: empty '{name}'")
    allowed = {"split": SPLITS, "open_split": SPLITS, "age": AGE_BINS, "gender": GENDERS}
    for name, choices in allowed.items():
        if name in values and values[name] not in choices:
            raise DataError(f"{where}: unknown {name} '{values[name]}' (allowed: {', '.join(choices)})")
    if not (values["face"] or values["voice"] or values["text"]):
        raise DataError(f"{where}: sample '{values['id']}' has no face, voice or text")
    values.setdefault("open_split", None)
    return Row(**values, line=line)
