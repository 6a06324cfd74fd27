"""Ablation tables from run records: one row per value of the swept config keys, statistics over seeds.

A cell is the mean ± sample standard deviation (ddof=1) of a summary metric over the row's finished
runs, one per `run.seed`. A row that lacks a finished run for any seed is marked incomplete (never
averaged silently), not ranked, and its missing seeds are named in the notes. With a baseline row, each
row gets the difference of means and a two-sided paired t-test over the seeds both rows finished.
Rows follow the study's order with the baseline first. The renderers (LaTeX, Markdown, CSV) are in
research/table_formats.py, the paper names they print in research/table_names.py.
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

from research.config_parse import flatten
from research.metrics import lower_is_better
from research.table_names import Names, in_percent

ALPHA = 0.05  # significance level of the dagger
MIN_DOF = 4  # a dagger needs a paired t-test with at least 4 degrees of freedom (5 paired seeds)
POWER = 0.8  # the power at which the minimum detectable effect (Cell.mde) is stated


class TableError(ValueError):
    """The records cannot make the requested table (the message says why)."""


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
    ci: tuple[float, float] | None = None  # 1 - ALPHA confidence interval of the mean paired difference
    mde: float | None = None  # the smallest difference that test finds with probability POWER

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
    counts: bool = True  # render the Seeds column (finished / expected); without it ‡ still marks a short row

    def display(self, row: Row) -> list[str]:
        """The row's values as the table prints them."""
        return [self.names.value(key, text) for key, text in zip(self.keys, row.label, strict=True)]

    def header(self, metric: str) -> str:
        """A metric's header (a labels file's name, else the metric), `(%)` when shown in percent."""
        return self.names.columns.get(metric, metric) + (" (%)" if in_percent(metric) else "")


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


def _interval(differences: list[float]) -> tuple[tuple[float, float], float]:
    """Paired differences -> (their mean's two-sided 1 - ALPHA t interval, the minimum detectable effect:
    the true mean difference that the paired t-test at ALPHA finds with probability POWER,
    (t(1 - ALPHA / 2) + t(POWER)) x SE with n - 1 degrees of freedom)."""
    d = np.asarray(differences, float)
    se, dof = d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
    critical = stats.t.ppf(1 - ALPHA / 2, dof)
    low, high = float(d.mean() - critical * se), float(d.mean() + critical * se)
    return (low, high), float((critical + stats.t.ppf(POWER, dof)) * se)


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
                cell.ci, cell.mde = _interval([cell.values[s] - base.values[s] for s in paired])
