"""Evaluation figures: one function per plot; each writes a PNG to `path` and a PDF next to it (for papers)
and returns the PNG's path.

Figures are built with matplotlib's object API (`Figure`, rendered by the Agg backend) rather than pyplot,
so nothing depends on a display or leaks open figures in long runs. Every plot (these, experiments/ablate.py's
chart) draws under one style, STYLE, through `styled`.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import norm
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from research.metrics.verification import eer, roc

DET_TICKS = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
# The one matplotlib style of every figure: paper-sized fonts, no top/right spines, TrueType fonts in PDFs.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",  # nothing clipped: long titles and outside legends stay in the file
    "pdf.fonttype": 42,
}
# Axis names, with units, of the metrics the plots draw (others print as their name).
AXIS_NAMES = {
    "loss": "loss (nats)",
    "acc": "accuracy (fraction)",
    "macro_f1": "macro-F1 (fraction)",
    "eer": "EER (fraction)",
    "lr": "learning rate",
    "target_rate": "targeted success rate (fraction)",
}


def styled(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Draw `plot` under STYLE."""

    @functools.wraps(plot)
    def draw(*args: Any, **kwargs: Any) -> Any:
        with rc_context(STYLE):
            return plot(*args, **kwargs)

    return draw


def images(out: Path) -> dict[str, Path]:
    """The report's plots, keyed for W&B media: `plots/training_curves`, `plots/test/roc_det`, ..."""
    return {f"plots/{p.relative_to(out).with_suffix('').as_posix()}": p for p in sorted(out.rglob("*.png"))}


def save(fig: Figure, path: str | Path) -> Path:
    """The figure as PNG at `path` and as PDF beside it; the PNG's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    fig.savefig(path.with_suffix(".pdf"))
    return path


@styled
def training_curves(history: list[dict[str, float]], path: str | Path) -> Path:
    """One panel per metric ("loss", "acc", "lr", ...), one line per split ("train/loss", "val/loss")."""
    panels: dict[str, list[str]] = {}
    for key in sorted({k for row in history for k in row} - {"epoch"}):
        panels.setdefault(key.split("/")[-1], []).append(key)
    fig = Figure(figsize=(4 * max(len(panels), 1), 3))
    for n, (metric, keys) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), n + 1)
        for key in keys:
            rows = [row for row in history if key in row]
            ax.plot([row["epoch"] for row in rows], [row[key] for row in rows], marker=".", label=key)
        ax.set(title=metric, xlabel="epoch", ylabel=AXIS_NAMES.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return save(fig, path)


@styled
def confusion(matrix: np.ndarray, class_names: list[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (row = true class); counts written in the cells up to 20 classes."""
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # (C, C)
    size = min(3 + 0.4 * len(class_names), 20)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize="small")
    ax.set_yticks(ticks, class_names, fontsize="small")
    ax.set(xlabel="predicted class", ylabel="true class")
    if len(class_names) <= 20:
        for (r, c), count in np.ndenumerate(matrix):
            colour = "white" if rates[r, c] > 0.5 else "black"
            ax.text(c, r, str(count), ha="center", va="center", fontsize="x-small", color=colour)
    return save(fig, path)


@styled
def roc_det(scores: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """ROC (TPR vs FPR, log FPR axis) and DET (FNR vs FPR on normal-deviate axes), EER point marked."""
    fpr, tpr, _ = roc(scores, labels)
    rate, _ = eer(scores, labels)
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(fpr, tpr)
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.01), xlabel="false accept rate (log scale)")
    ax.set_ylabel("true accept rate (fraction)")
    ax.set_title("ROC")
    det = fig.add_subplot(1, 2, 2)
    det.plot(_probit(fpr), _probit(1 - tpr))
    det.plot(_probit(rate), _probit(rate), "o", label=f"EER {rate:.2%}")
    tick_labels = [f"{t:g}" for t in DET_TICKS * 100]
    det.set_xticks(_probit(DET_TICKS), tick_labels)
    det.set_yticks(_probit(DET_TICKS), tick_labels)
    limits = _probit(np.array([5e-4, 0.99]))
    det.set(xlim=limits, ylim=limits, xlabel="false accept rate (%)", ylabel="false reject rate (%)", title="DET")
    det.legend()
    return save(fig, path)


def _probit(p: np.ndarray) -> np.ndarray:
    """Normal deviate of a rate, the DET axis scale (rates clipped to [1e-4, 1 - 1e-4])."""
    return norm.ppf(np.clip(p, 1e-4, 1 - 1e-4))


@styled
def score_histograms(scores: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Densities of target and non-target trial scores on shared bins."""
    labels = np.asarray(labels, bool)
    bins = np.histogram_bin_edges(scores, bins=50)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.hist(scores[labels], bins=bins, density=True, alpha=0.6, label=f"target ({labels.sum()})")
    ax.hist(scores[~labels], bins=bins, density=True, alpha=0.6, label=f"non-target ({(~labels).sum()})")
    ax.set(xlabel="trial score", ylabel="density (per unit score)")
    ax.legend()
    return save(fig, path)


@styled
def embedding_map(
    emb: np.ndarray,
    colour_by: dict[str, np.ndarray],
    path: str | Path,
    names: dict[str, list[str]] | None = None,
    max_points: int = 500,
    seed: int = 0,
) -> Path:
    """t-SNE map of embeddings (N, E), one panel per colouring label (N,) (identity, gender, ...).
    At most max_points samples, drawn with the seed, keep it to seconds; legends (up to 10 classes) to the
    right of the points."""
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(emb), min(max_points, len(emb)), replace=False))
    perplexity = min(30.0, (len(keep) - 1) / 3)
    # One OpenMP thread: on a busy machine, t-SNE's threads spin-wait and run 10-20x slower than one.
    with threadpool_limits(1, user_api="openmp"):
        xy = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb[keep])  # (n, 2)
    fig = Figure(figsize=(5.5 * len(colour_by), 4))
    for n, (key, values) in enumerate(colour_by.items()):
        ax = fig.add_subplot(1, len(colour_by), n + 1)
        values = np.asarray(values)[keep]
        classes = np.unique(values)
        palette = colormaps["tab10" if len(classes) <= 10 else "tab20"]  # beyond 20 classes colours repeat
        for c in classes:
            label = names[key][c] if names and key in names else str(c)
            ax.scatter(*xy[values == c].T, s=8, label=label, color=palette(int(c) % palette.N))
        if len(classes) <= 10:
            ax.legend(markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set(title=f"t-SNE by {key}", xticks=[], yticks=[])
    return save(fig, path)


@styled
def subgroup_bars(table: dict[str, dict[str, dict[str, float]]], metric: str, path: str | Path) -> Path:
    """Horizontal bars of `metric` per subgroup (sample count in brackets), one panel per attribute,
    three panels a row; `table` is a fairness.breakdown table."""
    attrs = [a for a, rows in table.items() if any(metric in row for row in rows.values())]
    n_rows = max(1, -(-len(attrs) // 3))
    fig = Figure(figsize=(13.5, 3.5 * n_rows))
    for n, attr in enumerate(attrs):
        rows = {g: row for g, row in table[attr].items() if metric in row}
        ax = fig.add_subplot(n_rows, 3, n + 1)
        bars = ax.barh([f"{g} ({row['n']})" for g, row in rows.items()], [row[metric] for row in rows.values()])
        ax.bar_label(bars, fmt="%.3g", fontsize="small")
        ax.invert_yaxis()
        ax.set(title=attr, xlabel=AXIS_NAMES.get(metric, metric))
    return save(fig, path)


@styled
def attack_curves(rows: list[dict[str, float]], title: str, value_range: tuple[float, float], path: str | Path) -> Path:
    """Each metric of experiments/attack.py's rows (acc, target_rate, eer) against the L-inf budget eps on
    inputs in `value_range`."""
    fig = Figure(figsize=(4.5, 3.4))
    ax = fig.add_subplot()
    for metric in ("acc", "target_rate", "eer"):
        if metric in rows[0]:
            name = AXIS_NAMES[metric].removesuffix(" (fraction)")
            ax.plot([r["eps"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
    low, high = value_range
    ax.set(xlabel=f"ε (L∞ budget, inputs in [{low:g}, {high:g}])", ylabel="metric value (fraction)", ylim=(0, 1))
    ax.set_title(textwrap.fill(title, 50))
    ax.legend()
    return save(fig, path)
