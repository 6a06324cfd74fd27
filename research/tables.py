"""Ablation tables from run records: one row per value of the swept config keys, statistics over seeds.

A cell is the mean ± sample standard deviation (ddof=1) of a summary metric over the row's finished
runs, one per `run.seed`. A row that lacks a finished run for any seed is marked incomplete (never
averaged silently), not ranked, and its missing seeds are named in the notes. With a baseline row, each
row gets the difference of means and a two-sided paired t-test over the seeds both rows finished.
Renderers: LaTeX (booktabs), Markdown and CSV rows; the bar chart is drawn by experiments/ablate.py.
LaTeX and Markdown print paper names (VALUE_NAMES, COLUMN_NAMES, a labels file) in the study's row order
with the baseline first; the CSV keeps the config's values.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from research.config import flatten
from research.metrics import lower_is_better

ALPHA = 0.05  # significance level of the dagger
MIN_DOF = 4  # a dagger needs a paired t-test with at least 4 degrees of freedom (5 paired seeds)
PERCENT = ("eer", "dcf")  # metrics the LaTeX, Markdown and chart show in percent (the records hold fractions)


class TableError(ValueError):
    """The records cannot make the requested table (the message says why)."""


# Paper names of the project's known config values, per key; a list value (modalities) is named part by
# part, joined by " + ". Values not listed here print as they are; `--labels FILE` adds or overrides names.
VALUE_NAMES: dict[str, dict[str, str]] = {
    "loss.name": {
        "softmax": "Softmax",
        "sphereface": "SphereFace",
        "sphereface_r": "SphereFace-R",
        "sphereface2": "SphereFace2",
        "cosface": "CosFace",
        "arcface": "ArcFace",
        "mask_proxy": "Mask Proxy",
        "contrastive": "Contrastive",
        "triplet": "Triplet",
        "cross_modal": "Cross-modal",
    },
    "model.fusion": {
        "early": "Early",
        "stack": "Channel stacking",
        "cross_attn": "Cross-attention",
        "late": "Late",
        "gated": "Gated",
        "concat": "Feature fusion",
        "bottleneck": "Bottleneck",
        "ensemble": "Ensemble (separately trained)",
    },
    "model.modalities": {"face": "Face", "voice": "Voice", "text": "Text"},
    "model.combine": {"mean": "Mean", "product": "Product", "learned": "Learned"},
    "model.combine_features": {"add": "Add", "mul": "Multiply", "concat": "Concatenate"},
    "model.face": {"face_cnn": "CNN", "face_vit": "ViT"},
    "model.voice": {"voice_ecapa": "ECAPA-TDNN", "voice_vit": "ViT"},
    "model.text": {"text_tiny": "Tiny transformer", "text_hf": "MiniLM"},
}
# Column headers of the known keys; other keys print as their last dotted part, capitalised.
COLUMN_NAMES = {
    "loss.name": "Loss",
    "loss.{loss.name}.margin": "Margin",
    "model.fusion": "Fusion",
    "model.modalities": "Modalities",
    "model.combine": "Combination",
    "model.combine_features": "Feature combination",
    "model.dim": "Width",
    "optim.lr": "Learning rate",
    "data.synthetic.noise": "Noise",
    "data.synthetic.missing": "Missing",
    "data.synthetic.carry": "Label carried by",
}


@dataclass
class Names:
    """How keys, metrics and values print in the LaTeX and Markdown tables and the chart (the CSV keeps the
    config's own values). `columns`: key or metric -> header; `values`: key -> {value: name}."""

    columns: dict[str, str] = field(default_factory=lambda: dict(COLUMN_NAMES))
    values: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in VALUE_NAMES.items()})

    def update(self, labels: dict[str, Any]) -> None:
        """Add a labels file's names: {"columns": {key: header}, "values": {key: {value: name}}}."""
        if not isinstance(labels, dict) or set(labels) - {"columns", "values"}:
            raise TableError("a labels file maps 'columns' (key or metric: header) and 'values' (key: {value: name})")
        self.columns |= {str(k): str(v) for k, v in (labels.get("columns") or {}).items()}
        for key, names in (labels.get("values") or {}).items():
            if not isinstance(names, dict):
                raise TableError(f"labels file: values of {key!r} must map each value to its name")
            self.values.setdefault(str(key), {}).update({str(v): str(n) for v, n in names.items()})

    def column(self, key: str) -> str:
        return self.columns.get(key) or re.sub(r"\{[^}]*\}", "", key).split(".")[-1].capitalize()

    def value(self, key: str, text: str) -> str:
        names = self.values.get(key, {})
        parts = text.split("+")
        if text not in names and len(parts) > 1 and all(part in names for part in parts):
            return " + ".join(names[part] for part in parts)
        return names.get(text, text)


@dataclass
class Cell:
    values: dict[int, float]  # seed -> metric value of a finished run
    complete: bool  # every expected seed has a value
    mean: float = math.nan
    std: float = math.nan  # nan with fewer than two values
    rank: int | None = None  # 0 = best, 1 = second best in its column (complete rows only)
    delta: float | None = None  # mean - baseline mean
    p: float | None = None  # paired t-test against the baseline; None = no test
    paired: int = 0  # seeds in that test

    @property
    def significant(self) -> bool:
        """p < ALPHA with at least MIN_DOF degrees of freedom: the dagger."""
        return self.p is not None and self.p < ALPHA and self.paired - 1 >= MIN_DOF


@dataclass
class Row:
    label: tuple[str, ...]  # formatted values of the table's keys
    runs: dict[int, str]  # seed -> record status, or "missing"
    cells: dict[str, Cell] = field(default_factory=dict)
    params: float | None = None  # mean trainable parameter count (summary `params`) of the finished runs

    @property
    def finished(self) -> int:
        """Seeds with a finished run."""
        return sum(status == "finished" for status in self.runs.values())


@dataclass
class Table:
    keys: list[str]
    metrics: list[tuple[str, str]]  # (name, "max" | "min")
    seeds: list[int]
    rows: list[Row]
    baseline: int | None = None  # index of the baseline row (the first row when there is one)
    names: Names = field(default_factory=Names)
    params: bool = False  # render a parameter-count column
    deltas: bool = True  # render the Δ columns (with a baseline); without them the dagger marks the mean

    def display(self, row: Row) -> list[str]:
        """The row's values as the table prints them."""
        return [self.names.value(key, text) for key, text in zip(self.keys, row.label, strict=True)]

    def header(self, metric: str) -> str:
        """A metric's header (a labels file's name, else the metric), `(%)` when shown in percent."""
        return self.names.columns.get(metric, metric) + (" (%)" if in_percent(metric) else "")


def in_percent(metric: str) -> bool:
    """EER and detection costs print in percent (x 100)."""
    return any(word in metric for word in PERCENT)


def config_value(config: dict[str, Any], key: str) -> Any:
    """A dotted key of a nested config, or None. `{k}` inside the key is first replaced by the value of
    k, so `loss.{loss.name}.margin` reads the margin of each run's own loss. Flat dotted keys (as a W&B
    sweep adds them to run.config) are the fallback."""
    key = re.sub(r"\{([^}]+)\}", lambda m: str(config_value(config, m.group(1))), key)
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return config.get(key)
        node = node[part]
    return node


def label(value: Any) -> str:
    """How a config value prints and matches: lists as `a+b` (sorted), absent as `-`."""
    if isinstance(value, (list, tuple)):
        return "+".join(sorted(map(str, value)))
    return "-" if value is None else str(value)


def _order(value: Any) -> tuple:
    """Sort key: lists by length then name (unimodal rows first), numbers by value."""
    if isinstance(value, (list, tuple)):
        return (len(value), label(value), 0.0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, "", float(value))
    return (0, label(value), 0.0)


def direction(metric: str) -> str:
    """The direction of a metric: "min" where lower is better (by name), else "max" (experiments/ablate.py's
    `name:min` / `name:max` override it)."""
    return "min" if lower_is_better(metric) else "max"


def swept_keys(records: list[dict[str, Any]]) -> list[str]:
    """Config keys whose value differs between records, except `run.*` (seed, name, group ...)."""
    flat = [flatten(r["config"]) for r in records]
    keys = sorted({k for f in flat for k in f if not k.startswith("run.")})
    return [k for k in keys if len({label(f.get(k)) for f in flat}) > 1]


def unknown(kind: str, name: str, known: set[str]) -> TableError:
    """The one-line error for a key or metric no run has, naming the closest that exist."""
    closest = difflib.get_close_matches(name, sorted(known), n=8, cutoff=0)
    return TableError(
        f"unknown {kind} {name!r}: no run has it; closest of the {len(known)} there: {', '.join(closest)}"
    )


def check_keys(records: list[dict[str, Any]], keys: list[str]) -> None:
    """Every row key must be in some run's config (a key absent from some runs prints as `-`)."""
    for key in keys:
        if all(config_value(r["config"], key) is None for r in records):
            known = {k for r in records for k in flatten(r["config"]) if not k.startswith("run.")}
            raise unknown("--by key", key, known)


def check_metrics(records: list[dict[str, Any]], metrics: list[tuple[str, str]]) -> None:
    """Every metric must be in some run's summary."""
    known = {k for r in records for k in r.get("summary", {})}
    for name, _ in metrics:
        if name not in known:
            raise unknown("metric", name, known)


def _pick(records: list[dict[str, Any]], row: tuple[str, ...], seed: int) -> dict[str, Any]:
    """Of several records of one row and seed, the finished one, else the latest, if they are reruns of one
    configuration; runs that differ in a config field outside the row keys are an error naming them."""
    first = flatten(records[0]["config"])
    for other in records[1:]:
        config = flatten(other["config"])
        fields = sorted(
            k
            for k in first.keys() | config.keys()
            if not k.startswith("run.") and label(first.get(k)) != label(config.get(k))
        )
        if fields:
            names = " and ".join(
                repr(r.get("name") or config_value(r["config"], "run.name")) for r in (records[0], other)
            )
            shown = ", ".join(f"{k} ({label(first.get(k))} vs {label(config.get(k))})" for k in fields)
            raise TableError(
                f"runs {names} fall into one row ({' / '.join(row)}, seed {seed}) but differ in {shown}: "
                "add those keys to --by or keep one with --where"
            )
    return max(records, key=lambda r: (r.get("status") == "finished", r.get("finished_at") or "", r["started_at"]))


def build_table(
    records: list[dict[str, Any]],
    keys: list[str],
    metrics: list[tuple[str, str]],
    baseline: dict[str, str] | None = None,
    seeds: list[int] | None = None,
    study_order: dict[str, list[str]] | None = None,
) -> Table:
    """Group records by `keys`, one run per seed; `seeds` defaults to every seed seen in the records.

    Rows follow `study_order` (key -> its values as labels, in the study's order, e.g. a sweep file's),
    values it does not list coming after in their natural order; the baseline row comes first."""
    groups: dict[tuple[str, ...], dict[int, list]] = {}
    order: dict[tuple[str, ...], tuple] = {}
    for record in records:
        values = [config_value(record["config"], k) for k in keys]
        row = tuple(map(label, values))
        order[row] = tuple(_place(k, v, study_order or {}) for k, v in zip(keys, values, strict=True))
        seed = int(config_value(record["config"], "run.seed") or 0)
        groups.setdefault(row, {}).setdefault(seed, []).append(record)
    seeds = sorted(seeds if seeds is not None else {s for runs in groups.values() for s in runs})
    rows = []
    for key in sorted(groups, key=order.get):
        picked = {s: _pick(groups[key][s], key, s) for s in seeds if s in groups[key]}
        row = Row(key, {s: picked[s].get("status", "unknown") if s in picked else "missing" for s in seeds})
        for name, _ in metrics:
            found = {s: r.get("summary", {}).get(name) for s, r in picked.items() if row.runs[s] == "finished"}
            values = {s: float(v) for s, v in found.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            data = np.array(list(values.values()))
            row.cells[name] = Cell(
                values,
                complete=len(values) == len(seeds),
                mean=float(data.mean()) if len(data) else math.nan,
                std=float(data.std(ddof=1)) if len(data) > 1 else math.nan,
            )
        counts = [r["summary"]["params"] for s, r in picked.items() if row.runs[s] == "finished" and _has_params(r)]
        row.params = float(np.mean(counts)) if counts else None
        rows.append(row)
    table = Table(list(keys), list(metrics), seeds, rows)
    _rank(table)
    if baseline:
        _compare(table, baseline)
    return table


def _place(key: str, value: Any, study_order: dict[str, list[str]]) -> tuple:
    """Sort key of one value: its position in the study's order, then (values it lacks) the natural order."""
    listed = study_order.get(key, [])
    text = label(value)
    return (listed.index(text) if text in listed else len(listed), *_order(value))


def _has_params(record: dict[str, Any]) -> bool:
    value = record.get("summary", {}).get("params")
    return isinstance(value, (int, float)) and math.isfinite(value)


def _rank(table: Table) -> None:
    """Best and second-best distinct mean per metric among complete rows (ties share the rank)."""
    for name, goal in table.metrics:
        cells = [row.cells[name] for row in table.rows if row.cells[name].complete]
        means = sorted({c.mean for c in cells}, reverse=goal == "max")
        for cell in cells:
            rank = means.index(cell.mean)
            cell.rank = rank if rank < 2 else None


def _compare(table: Table, baseline: dict[str, str]) -> None:
    """Difference of means and paired t-test (seeds both rows finished) of every row against the baseline."""
    for key in baseline:
        if key not in table.keys:
            raise TableError(f"unknown --baseline key {key!r}: the row keys are {', '.join(table.keys)}")
    column = {k: table.keys.index(k) for k in baseline}
    matches = [i for i, r in enumerate(table.rows) if all(r.label[column[k]] == v for k, v in baseline.items())]
    if len(matches) != 1:
        rows = "; ".join(",".join(f"{k}={v}" for k, v in zip(table.keys, r.label, strict=True)) for r in table.rows)
        raise TableError(f"baseline {baseline} matches {len(matches)} rows, not one; the rows: {rows}")
    table.rows.insert(0, table.rows.pop(matches[0]))  # the row every other is compared with comes first
    table.baseline = 0
    for name, _ in table.metrics:
        base = table.rows[table.baseline].cells[name]
        for i, row in enumerate(table.rows):
            cell = row.cells[name]
            if i == table.baseline or not cell.values or not base.values:
                continue
            cell.delta = cell.mean - base.mean
            paired = sorted(set(cell.values) & set(base.values))
            cell.paired = len(paired)
            if len(paired) >= 2:
                with warnings.catch_warnings():  # identical values: scipy warns and returns nan (no test)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = stats.ttest_rel([cell.values[s] for s in paired], [base.values[s] for s in paired]).pvalue
                cell.p = None if math.isnan(p) else float(p)


def notes(table: Table) -> list[str]:
    """The footnotes that say what the numbers and marks mean."""
    seeds = ", ".join(map(str, table.seeds))
    lines = [
        f"Mean ± sample standard deviation over seeds {seeds}; Seeds = finished runs / expected runs.",
        "Bold: best, underlined: second best per column among complete rows (↑ higher / ↓ lower is better).",
    ]
    if table.baseline is not None:
        base = " / ".join(table.display(table.rows[table.baseline]))
        delta = f"Δ: difference of means to the baseline row ({base}); " if table.deltas else ""
        lines.append(
            f"{delta}†: p < {ALPHA} in a two-sided paired t-test against the baseline row ({base}) across the "
            f"seeds both rows finished, marked only with at least {MIN_DOF} degrees of freedom "
            f"({MIN_DOF + 1} paired seeds; no test with fewer than 2 paired seeds or identical values)."
        )
        untested = [
            " / ".join(table.display(r))
            for r in table.rows
            if any(c.delta is not None and c.p is None for c in r.cells.values())
        ]
        lines += [f"No test for: {'; '.join(untested)}."] if untested else []
    shown = [table.names.columns.get(name, name) for name, _ in table.metrics if in_percent(name)]
    points = " (their Δ in percentage points)" if table.deltas and table.baseline is not None else ""
    lines += [f"In percent: {', '.join(shown)}{points}."] if shown else []
    for row in table.rows:
        if not all(c.complete for c in row.cells.values()):
            gaps = ", ".join(f"seed {s} {st}" for s, st in row.runs.items() if st != "finished")
            lines.append(
                f"‡ {' / '.join(table.display(row))}: incomplete ({gaps or 'a finished run lacks the metric'}); "
                "the mean is over the finished seeds only and the row is not ranked."
            )
    return lines


# Renderers. Each format says how to write a number, bold, second best and the two marks.
MARKDOWN = {"pm": " ± ", "bold": "**{}**", "second": "<ins>{}</ins>", "dagger": "†", "ddagger": " ‡", "dash": "–"}
MARKDOWN |= {"math": "{}"}
LATEX = {"pm": r" \pm ", "bold": r"\mathbf{{{}}}", "second": r"\underline{{{}}}", "dash": "--"}
LATEX |= {"dagger": r"^\dagger", "ddagger": r"^\ddagger", "math": "${}$"}


def _body(table: Table, style: dict[str, str], digits: int) -> list[list[str]]:
    """Table cells as strings: keys, seeds, then per metric the value (and Δ with a baseline)."""
    body = []
    for i, row in enumerate(table.rows):
        cells = [*table.display(row), f"{row.finished}/{len(table.seeds)}"]
        cells += [style["dash"] if row.params is None else params_text(row.params)] if table.params else []
        for name, _ in table.metrics:
            c = row.cells[name]
            scale, places = (100, max(digits - 2, 0)) if in_percent(name) else (1, digits)
            mark = style["dagger"] if c.significant else ""
            text = f"{scale * c.mean:.{places}f}"
            text += "" if math.isnan(c.std) else f"{style['pm']}{scale * c.std:.{places}f}"
            text = style["bold" if c.rank == 0 else "second"].format(text) if c.rank is not None else text
            text += ("" if table.deltas else mark) + (style["ddagger"] if c.values and not c.complete else "")
            cells.append(style["math"].format(text) if c.values else style["dash"])
            if table.baseline is not None and table.deltas:
                delta = None if c.delta is None else style["math"].format(f"{scale * c.delta:+.{places}f}{mark}")
                cells.append("baseline" if i == table.baseline else delta or style["dash"])
        body.append(cells)
    return body


def _header(table: Table) -> list[str]:
    """Key names, Seeds, Params (when asked), metric names with their direction, Δ columns."""
    names = table.names
    header = [names.column(k) for k in table.keys] + ["Seeds"] + (["Params"] if table.params else [])
    for name, goal in table.metrics:
        metric = table.header(name)
        header.append(f"{metric} {'↑' if goal == 'max' else '↓'}")
        header += [f"Δ {metric}"] if table.baseline is not None and table.deltas else []
    return header


def params_text(count: float) -> str:
    """A parameter count as papers print it: 845K, 2.91M, 1.20B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.{0 if unit == 'K' else 2}f}{unit}"
    return f"{count:.0f}"


def to_markdown(table: Table, digits: int = 3) -> str:
    header = _header(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _body(table, MARKDOWN, digits)]
    return "\n".join(lines + [""] + notes(table)) + "\n"


def latex_escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, the table's symbols as math."""
    text = re.sub(r"([&%$#_{}])", r"\\\1", text)
    symbols = {"±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "↑": r"$\uparrow$"}
    for symbol, tex in (symbols | {"↓": r"$\downarrow$", "–": "--", "<": "$<$", ">": "$>$"}).items():
        text = text.replace(symbol, tex)
    return text


LATEX_WIDTHS = {"column": ("table", r"\columnwidth"), "full": ("table*", r"\textwidth")}


def to_latex(table: Table, caption: str, tag: str, digits: int = 3, width: str = "column") -> str:
    """A booktabs float ready to \\input (needs booktabs and graphicx): `table` at most \\columnwidth wide
    (width="column") or `table*` at most \\textwidth (width="full"), the tabular shrunk to fit, never enlarged;
    the notes sit under it."""
    env, limit = LATEX_WIDTHS[width]
    header = [latex_escape(h) for h in _header(table)]
    keys = "l" * len(table.keys)
    lines = [
        rf"\begin{{{env}}}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{tab:{tag}}}",
        rf"\resizebox{{\ifdim\width>{limit}{limit}\else\width\fi}}{{!}}{{%",
        rf"\begin{{tabular}}{{{keys}r{'c' * (len(header) - len(keys) - 1)}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for cells in _body(table, LATEX, digits):
        lines.append(" & ".join(latex_escape(c) if j < len(table.keys) else c for j, c in enumerate(cells)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip", r"{\footnotesize\raggedright"]
    lines += [latex_escape(note) + r"\par" for note in notes(table)]
    return "\n".join(lines + ["}", rf"\end{{{env}}}"]) + "\n"


def to_csv(table: Table) -> list[list[str]]:
    """Rows for csv.writer: full-precision numbers, one column per statistic, empty = none."""
    header = [*table.keys, "seeds_finished", "seeds_expected", "runs"] + (["params"] if table.params else [])
    for name, _ in table.metrics:
        header += [f"{name} mean", f"{name} std", f"{name} n", f"{name} delta", f"{name} p"]
    out = [header]
    for row in table.rows:
        cells = [*row.label, str(row.finished), str(len(table.seeds))]
        cells.append(" ".join(f"{s}:{status}" for s, status in row.runs.items()))
        cells += ["" if row.params is None else repr(row.params)] if table.params else []
        for name, _ in table.metrics:
            c = row.cells[name]
            numbers = [c.mean, c.std, len(c.values), c.delta, c.p]
            cells += ["" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) for v in numbers]
        out.append(cells)
    return out
