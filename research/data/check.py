"""`prepare.py check MANIFEST`: validate every row and describe the dataset.

Checks, in order: the manifest's structure and labels (manifest.read: known splits, class lists of the
sidecar), that the open split is identity-disjoint and the closed split's val/test identities and groups
occur in training (what the loader will demand), that official trial lists name samples of the
manifest, and that every file exists and decodes (in parallel worker processes, with a progress bar).
The report counts samples and subjects per split, samples per attribute value and per pair of
attributes in each split, and the modalities present: the statistics a fairness study starts from.
prepare.py keeps the problems of the samples that do not decode beside the manifest (research/data/checked.py)
for a run that reads its samples while training.
"""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from research.config import MODALITIES
from research.data import manifest
from research.data.decode import decode_row
from research.data.manifest import DataError, Row


@dataclass
class Report:
    path: Path
    rows: int
    problems: list[str] = field(default_factory=list)  # each names the file and line
    unreadable: list[str] = field(default_factory=list)  # the problems of samples that do not decode (in problems)
    splits: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # column -> split -> samples/subjects
    attributes: dict[str, dict[str, Counter]] = field(default_factory=dict)  # attribute -> split -> value counts
    pairs: dict[str, dict[str, Counter]] = field(default_factory=dict)  # "a+b" -> split -> "va+vb" counts
    present: dict[str, int] = field(default_factory=dict)  # modality -> samples that have it
    voice_seconds: float = 0.0
    trials: dict[str, int] = field(default_factory=dict)  # official list -> trials


def check(
    path: str | Path, *, workers: int = 1, image_size: int = 32, sample_rate: int = 16000, progress: bool = True
) -> Report:
    """Validate manifest `path` (a structural error raises DataError; file and split problems are listed)."""
    path = Path(path)
    rows, meta = manifest.read(path), manifest.read_meta(path)
    report = Report(path, len(rows))
    report.problems += _split_problems(path, rows)
    ids = {r.id for r in rows}
    for name, pairs in meta.trials.items():
        report.trials[name] = len(pairs)
        for t, (_, a, b) in enumerate(pairs, start=1):
            for sample in {a, b} - ids:
                report.problems.append(
                    f"{manifest.meta_path(path)}: trial {t} of list '{name}' names unknown '{sample}'"
                )
    decode = partial(_decode, path, image_size, sample_rate)
    bar = dict(total=len(rows), desc="decoding", disable=not progress, leave=False)
    if workers <= 1:
        results = [decode(r) for r in tqdm(rows, **bar)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            chunk = max(1, min(64, len(rows) // (4 * workers)))
            results = list(tqdm(pool.map(decode, rows, chunksize=chunk), **bar))
    for problem, seconds in results:
        if problem:
            report.unreadable.append(problem)
        report.voice_seconds += seconds
    report.problems += report.unreadable
    _statistics(report, rows)
    return report


def _decode(path: Path, image_size: int, sample_rate: int, row: Row) -> tuple[str, float]:
    """(problem or "", voice seconds) of one row."""
    try:
        sample = decode_row(path.parent, row, image_size, sample_rate)
    except DataError as err:
        return f"{err} (manifest {path} line {row.line}, sample '{row.id}')", 0.0
    return "", 0.0 if sample.voice is None else len(sample.voice) / sample_rate


def _split_problems(path: Path, rows: list[Row]) -> list[str]:
    """Open split: each subject in one part. Closed split: val/test subjects and groups occur in train."""
    problems = []
    if rows[0].open_split is not None:
        parts: dict[str, set[str]] = {}
        for r in rows:
            parts.setdefault(r.subject, set()).add(r.open_split)
        several = {s: sorted(p) for s, p in parts.items() if len(p) > 1}
        problems += [f"manifest {path}: subject '{s}' is in several open splits {p}" for s, p in several.items()]
    train = [r for r in rows if r.split == "train"]
    subjects, groups = {r.subject for r in train}, {r.group for r in train}
    for r in rows:
        if r.split != "train" and r.subject not in subjects:
            problems.append(f"manifest {path} line {r.line}: closed-split subject '{r.subject}' has no training sample")
        if r.group not in groups:
            problems.append(f"manifest {path} line {r.line}: group '{r.group}' has no training sample")
    return problems


def _statistics(report: Report, rows: list[Row]) -> None:
    columns = ["split"] + (["open_split"] if rows[0].open_split is not None else [])
    for column in columns:
        by_split: dict[str, dict[str, int]] = {}
        for split in manifest.SPLITS:
            chosen = [r for r in rows if getattr(r, column) == split]
            by_split[split] = {"samples": len(chosen), "subjects": len({r.subject for r in chosen})}
        report.splits[column] = by_split
    names = ["age", "gender", "group", *sorted({a for r in rows for a in r.attributes})]

    def value(r: Row, name: str) -> str:
        found = getattr(r, name) if name in ("age", "gender", "group") else r.attributes.get(name, "")
        return found or "?"

    for name in names:
        report.attributes[name] = {s: Counter(value(r, name) for r in rows if r.split == s) for s in manifest.SPLITS}
    for a, b in itertools.combinations(names, 2):
        report.pairs[f"{a}+{b}"] = {
            s: Counter(f"{value(r, a)}+{value(r, b)}" for r in rows if r.split == s) for s in manifest.SPLITS
        }
    report.present = {m: sum(bool(getattr(r, m) or (m == "text" and r.transcript)) for r in rows) for m in MODALITIES}


def format_report(report: Report) -> str:
    """The report as text: problems first, then the tables."""
    lines = [f"manifest {report.path}: {report.rows} samples, {len(report.problems)} problem(s)"]
    lines += [f"  problem: {p}" for p in report.problems[:20]]
    if len(report.problems) > 20:
        lines.append(f"  ... and {len(report.problems) - 20} more")
    present = ", ".join(f"{m} {n}" for m, n in report.present.items())
    lines.append(
        f"modalities present: {present}; voice {report.voice_seconds:.1f} s ({report.voice_seconds / 3600:.2f} h)"
    )
    for name, count in report.trials.items():
        lines.append(f"official trial list {name}: {count} trials")
    for column, by_split in report.splits.items():
        cells = ", ".join(f"{s} {c['samples']} samples / {c['subjects']} subjects" for s, c in by_split.items())
        lines.append(f"{column}: {cells}")
    for title, table in (("attribute", report.attributes), ("pair", report.pairs)):
        for name, by_split in table.items():
            lines.append(f"{title} {name} (samples per split, ? = unknown):")
            values = sorted(set().union(*by_split.values()))
            lines += [f"  {v:<28} " + "  ".join(f"{s} {by_split[s][v]:>7}" for s in by_split) for v in values]
    return "\n".join(lines)
