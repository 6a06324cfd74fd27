"""The manifest: one row per sample, the contract between a dataset and the loader.

A manifest is a CSV (with a header) or a JSONL file (one JSON object per line) with the columns in
`COLUMNS`, the optional columns in `OPTIONAL` and any number of attribute columns (ethnicity,
nationality, ...): every column the format does not name is an attribute, a class label like age.
Paths are relative to the manifest's folder (absolute paths work too); an empty path means the
modality is missing for that sample. An empty attribute (age, gender or another) means unknown.

Next to `name.csv` an optional sidecar `name.meta.json` holds what the dataset defines beyond rows:
its class lists (`classes`: attribute -> class names, e.g. First Impressions' own age bins), numeric
columns that are not labels (`numeric`), and official verification trial lists (`trials`: name ->
[[target, id_a, id_b], ...]). Without a sidecar, age and gender use the project's `AGE_BINS` and
`GENDERS`. Files are written atomically: a reader never sees half a manifest. See docs/data.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

AGE_BINS: tuple[str, ...] = ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS: tuple[str, ...] = ("female", "male")
SPLITS: tuple[str, ...] = ("train", "val", "test")
COLUMNS: tuple[str, ...] = ("id", "subject", "split", "open_split", "face", "voice", "text", "age", "gender", "group")
OPTIONAL: tuple[str, ...] = ("open_split", "box", "frame", "segment", "transcript")
DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {"age": AGE_BINS, "gender": GENDERS}


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
    box: str = ""  # face box "x y w h" in pixels of the image or frame ("" = the whole image)
    frame: str = ""  # seconds into the `face` video at which its frame is taken ("" = `face` is an image)
    segment: str = ""  # "start end" seconds of the voice within its file ("" = the whole file)
    transcript: str = ""  # the transcript itself, for datasets without one text file per sample
    attributes: dict[str, str] = field(default_factory=dict)  # extra label columns: name -> value ("" = unknown)
    line: int = 0  # line of the manifest the row was read from (for error messages); 0 = not read


@dataclass
class Meta:
    """The sidecar of a manifest: dataset-defined class lists, numeric columns, official trial lists."""

    classes: dict[str, list[str]] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)
    trials: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)

    def class_list(self, attribute: str) -> list[str] | None:
        """The allowed values of an attribute: the sidecar's list, else the project default, else None."""
        if attribute in self.classes:
            return list(self.classes[attribute])
        default = DEFAULT_CLASSES.get(attribute)
        return list(default) if default else None


def meta_path(path: str | Path) -> Path:
    """`data/vox1.csv` -> `data/vox1.meta.json`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.meta.json")


def read_meta(path: str | Path) -> Meta:
    """The sidecar of manifest `path` (defaults when there is none)."""
    side = meta_path(path)
    if not side.is_file():
        return Meta()
    try:
        raw = json.loads(side.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"manifest sidecar {side}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or set(raw) - {"classes", "numeric", "trials"}:
        raise DataError(f"manifest sidecar {side}: expected an object with classes, numeric and trials")
    trials = {}
    for name, pairs in raw.get("trials", {}).items():
        if not all(isinstance(p, list) and len(p) == 3 and p[0] in (0, 1) for p in pairs):
            raise DataError(f"manifest sidecar {side}: trial list '{name}' must hold [target 0/1, id_a, id_b] triples")
        trials[name] = [(int(t), str(a), str(b)) for t, a, b in pairs]
    return Meta(classes=raw.get("classes", {}), numeric=raw.get("numeric", []), trials=trials)


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
    meta = read_meta(path)
    extra = [c for c in header if c not in COLUMNS and c not in OPTIONAL and c not in meta.numeric]
    rows = [_row(path, line, record, "open_split" in header, extra, meta) for line, record in records]
    if not rows:
        raise DataError(f"manifest {path} has no rows")
    ids = set()
    for row in rows:
        if row.id in ids:
            raise DataError(f"manifest {path} line {row.line}: duplicate id '{row.id}'")
        ids.add(row.id)
    return rows


def write(path: str | Path, rows: list[Row], meta: Meta | None = None, numeric: dict[str, list] | None = None) -> Path:
    """Write rows as .csv or .jsonl (by the suffix), and the sidecar when `meta` is given, atomically.

    Columns: `COLUMNS` (open_split only when every row has one), the optional columns some row uses,
    then the attributes, sorted. `numeric` adds columns of numbers (one value per row), named in the sidecar.
    """
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise DataError(f"manifest {path}: unknown format '{path.suffix}' (use .csv or .jsonl)")
    has_open = [r.open_split is not None for r in rows]
    if any(has_open) and not all(has_open):
        raise DataError(f"manifest {path}: give open_split for every row or for none")
    columns = [c for c in COLUMNS if c != "open_split" or all(has_open)]
    columns += [c for c in OPTIONAL[1:] if any(getattr(r, c) for r in rows)]
    attributes = sorted({a for r in rows for a in r.attributes})
    numeric = numeric or {}
    records = [{c: getattr(r, c) for c in columns} | {a: r.attributes.get(a, "") for a in attributes} for r in rows]
    for name, values in numeric.items():
        for record, value in zip(records, values, strict=True):
            record[name] = value
    if meta is not None:
        meta.numeric = sorted(numeric)
        side = {"classes": meta.classes, "numeric": meta.numeric, "trials": meta.trials}
        _atomic(meta_path(path), lambda f: json.dump(side, f))
    if path.suffix == ".csv":

        def dump(f):
            writer = csv.DictWriter(f, fieldnames=[*columns, *attributes, *numeric], lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
    else:

        def dump(f):
            f.writelines(json.dumps(r) + "\n" for r in records)

    _atomic(path, dump)
    return path


def _atomic(path: Path, dump) -> None:
    """Write a text file through a temporary file in the same folder, fsync, rename: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            dump(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _text(path: Path) -> str:
    """A manifest's text: UTF-8, with or without the byte-order mark spreadsheets write; any other encoding
    is a DataError naming the first line that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"manifest {path} line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    reader = csv.reader(io.StringIO(_text(path), newline=""))
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
    for line, text in enumerate(_text(path).split("\n"), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"manifest {path} line {line}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"manifest {path} line {line}: expected a JSON object")
        records.append((line, record))
    # A JSONL file has no header: a format column exists when every row has it, an attribute when any row has it.
    known = (*COLUMNS, *OPTIONAL)
    header = [c for c in known if records and all(c in r for _, r in records)]
    header += sorted({k for _, r in records for k in r if k not in known})
    for line, record in records:
        missing = [c for c in COLUMNS if c not in record and c not in OPTIONAL]
        if missing:
            raise DataError(f"manifest {path} line {line}: missing column(s) {', '.join(missing)}")
    return header, records


def _row(path: Path, line: int, record: dict, has_open: bool, extra: list[str], meta: Meta) -> Row:
    """Check one record's values and build its Row."""
    where = f"manifest {path} line {line}"
    names = [f.name for f in fields(Row) if f.name not in ("line", "attributes")]
    values = {}
    for name in [*names, *extra]:
        if name == "open_split" and not has_open:
            continue
        value = record.get(name, "")
        if not isinstance(value, str):
            raise DataError(f"{where}: column '{name}' must be a string, got {value!r}")
        values[name] = value.strip()
    for name in ("id", "subject", "group"):
        if not values[name]:
            raise DataError(f"{where}: empty '{name}'")
    for name in ("split", "open_split"):
        if name in values and values[name] not in SPLITS:
            raise DataError(f"{where}: unknown {name} '{values[name]}' (allowed: {', '.join(SPLITS)})")
    for name in ("age", "gender", "group", *extra):
        choices = meta.class_list(name)
        if choices is not None and values[name] not in choices and (values[name] or name == "group"):
            raise DataError(f"{where}: unknown {name} '{values[name]}' (allowed: {', '.join(choices)})")
    if not (values["face"] or values["voice"] or values["text"] or values["transcript"]):
        raise DataError(f"{where}: sample '{values['id']}' has no face, voice or text")
    if values["text"] and values["transcript"]:
        raise DataError(f"{where}: give a text file or a transcript, not both")
    _check_numbers(where, "box", values["box"], 4)
    _check_numbers(where, "frame", values["frame"], 1)
    _check_numbers(where, "segment", values["segment"], 2)
    values.setdefault("open_split", None)
    attributes = {name: values.pop(name) for name in extra}
    return Row(**values, attributes=attributes, line=line)


def _check_numbers(where: str, name: str, text: str, count: int) -> None:
    """`text` is empty or `count` non-negative numbers separated by spaces (box: w, h > 0; segment: end > start)."""
    if not text:
        return
    try:
        numbers = [float(t) for t in text.split()]
    except ValueError:
        numbers = []
    ok = len(numbers) == count and all(n >= 0 for n in numbers)
    ok = ok and (name != "box" or min(numbers[2:]) > 0) and (name != "segment" or numbers[1] > numbers[0])
    if not ok:
        shape = {"box": "'x y w h' (w, h > 0)", "frame": "seconds >= 0", "segment": "'start end' seconds, end > start"}
        raise DataError(f"{where}: bad {name} '{text}' (expected {shape[name]})")


def numbers(text: str) -> list[float]:
    """The numbers of a box / frame / segment field ([] when empty)."""
    return [float(t) for t in text.split()]
