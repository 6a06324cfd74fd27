"""Fairness breakdown (any metric per subgroup, gaps) and the dataset statistics report.

Subgroups are the values of each attribute (gender, age group, group, ...) and of each pairwise crossing
("gender+age": "female&young", ...). A metric is any function of a boolean sample mask, so the same
breakdown serves classification (metrics of the masked samples) and verification (metrics of the trials
whose two samples are both in the subgroup).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

Table = dict[str, dict[str, dict[str, float]]]  # attribute -> subgroup -> metric -> value
CROSS = "&"  # joins a crossing's subgroup names: "female&65+" (class names such as the age bin "65+" hold "+")


def subgroups(attrs: dict[str, np.ndarray], names: dict[str, list[str]]) -> dict[str, dict[str, np.ndarray]]:
    """Boolean masks (N,) of every non-empty subgroup: each attribute value, then each pairwise crossing.
    attrs: attribute -> class indices (N,); names: attribute -> class names."""
    groups = {}
    for attr, values in attrs.items():
        values = np.asarray(values)
        if values.min() < 0 or values.max() >= len(names[attr]):
            raise ValueError(f"attribute '{attr}' has class indices outside 0..{len(names[attr]) - 1}")
        groups[attr] = {names[attr][v]: values == v for v in np.unique(values)}
    for a, b in itertools.combinations(attrs, 2):
        crossed = {f"{ga}{CROSS}{gb}": ma & mb for ga, ma in groups[a].items() for gb, mb in groups[b].items()}
        groups[f"{a}+{b}"] = {g: m for g, m in crossed.items() if m.any()}
    return groups


def breakdown(
    groups: dict[str, dict[str, np.ndarray]], metric: Callable[[np.ndarray], dict[str, float]], min_size: int = 5
) -> Table:
    """metric(mask) with the sample count "n" for every subgroup of at least min_size samples.
    A subgroup where the metric is undefined (it returns {}) is left out."""
    table = {}
    for attr, masks in groups.items():
        rows = {g: metric(m) for g, m in masks.items() if m.sum() >= min_size}
        table[attr] = {g: {"n": int(masks[g].sum()), **row} for g, row in rows.items() if row}
    return table


def bias(table: Table) -> dict[str, dict[str, dict[str, float]]]:
    """Bias figures per attribute and metric over its subgroups: gap = best - worst (max - min) and std
    (population standard deviation). 0 means every subgroup scores the same; NaN values are skipped."""
    out = {}
    for attr, rows in table.items():
        metrics = sorted({k for row in rows.values() for k in row} - {"n"})
        out[attr] = {}
        for name in metrics:
            values = np.array([row[name] for row in rows.values() if name in row], float)
            values = values[~np.isnan(values)]
            if values.size:
                out[attr][name] = {"gap": float(values.max() - values.min()), "std": float(values.std())}
    return out


def dataset_report(
    labels: dict[str, np.ndarray], present: dict[str, np.ndarray], names: dict[str, list[str]] | None = None
) -> dict:
    """Dataset statistics as plain JSON-ready values.

    labels: attribute -> class indices (N,); present: modality -> (N,) bool; names: optional class names.
    Returns {"n", "missing": modality -> share absent, "histograms": attribute -> {class: count},
    "crosstabs": "a+b" -> {"rows", "cols", "counts" [[..]], "missing": modality -> [[share or None]]}}
    where a cell's missing share is None when the cell is empty.
    """
    names = names or {}
    classes = {a: _class_names(v, names.get(a)) for a, v in labels.items()}
    histograms = {a: _counts(v, len(classes[a])).tolist() for a, v in labels.items()}
    report = {
        "n": len(next(iter({**labels, **present}.values()))),
        "missing": {m: float(1 - np.mean(p)) for m, p in present.items()},
        "histograms": {a: dict(zip(classes[a], h, strict=True)) for a, h in histograms.items()},
        "crosstabs": {},
    }
    for a, b in itertools.combinations(labels, 2):
        shape = (len(classes[a]), len(classes[b]))
        cell = np.asarray(labels[a]) * shape[1] + np.asarray(labels[b])  # (N,) flat cell index
        counts = _counts(cell, shape[0] * shape[1]).reshape(shape)  # (A, B)
        missing = {}
        for m, p in present.items():
            absent = np.bincount(cell, weights=~np.asarray(p, bool), minlength=counts.size).reshape(shape)
            share = np.where(counts > 0, absent / np.maximum(counts, 1), np.nan)  # (A, B)
            missing[m] = [[None if np.isnan(x) else float(x) for x in row] for row in share]
        crosstab = {"rows": classes[a], "cols": classes[b], "counts": counts.tolist(), "missing": missing}
        report["crosstabs"][f"{a}+{b}"] = crosstab
    return report


def _class_names(values: np.ndarray, names: list[str] | None) -> list[str]:
    return list(names) if names is not None else [str(c) for c in range(int(np.max(values)) + 1)]


def _counts(values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(np.asarray(values), minlength=size)
