"""Scoring a trial list against stored embeddings: cosine, mean subtraction, AS-norm / S-norm, calibration.

The framework-free logic of experiments/score.py (NumPy only). Formats and conventions: docs/evaluation.md,
"Scoring a trial list".

- Embeddings: a safetensors file with one (D,) float tensor per key (an utterance path or a manifest row id).
- Trials, one a line: `label enroll test` (label 1 / 0, the VoxCeleb lists) or `enroll test [target|nontarget]`
  (Kaldi / WeSpeaker; the label is optional there).
- Scores, one a line: `enroll test score [target|nontarget]`.
- Calibration: s -> llr = a s + b by prior-weighted logistic regression (Bruemmer & du Preez 2006, the
  BOSARIS toolkit); Cllr, and min Cllr through the PAV (isotonic) optimal monotone calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from research.metrics import verification

LABELS = {"1": True, "0": False, "target": True, "nontarget": False}


class ScoringError(ValueError):
    """A problem with an input file, with the file and line it is at."""


@dataclass
class Trials:
    path: str
    enroll: list[str]
    test: list[str]
    lines: list[int]  # 1-based line number of each trial in the file
    labels: np.ndarray | None  # (T,) bool, None for a list without labels


def read_trials(path: str | Path) -> Trials:
    """Parse a trial list; every trial labelled or none. Blank lines are skipped."""
    enroll, test, lines, labels = [], [], [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3 and fields[0] in ("0", "1"):
            label, e, t = fields
        elif len(fields) == 3 and fields[2] in ("target", "nontarget"):
            e, t, label = fields
        elif len(fields) == 2:
            (e, t), label = fields, None
        else:
            raise ScoringError(
                f"{path} line {n}: expected 'label enroll test' (label 1/0) or 'enroll test [target|nontarget]', "
                f"got {line.strip()!r}"
            )
        if labels and (labels[0] is None) != (label is None):
            raise ScoringError(f"{path} line {n}: a trial list must label every trial or none")
        enroll.append(e), test.append(t), lines.append(n), labels.append(label)
    if not lines:
        raise ScoringError(f"{path}: no trials")
    known = None if labels[0] is None else np.array([LABELS[x] for x in labels])
    return Trials(str(path), enroll, test, lines, known)


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """key -> (D,) float64 embedding; every tensor must be 1-D and of one length."""
    table = {k: np.asarray(v, np.float64) for k, v in load_file(str(path)).items()}
    dims = {k: v.shape for k, v in table.items()}
    first = next(iter(dims.values()), None)
    for key, shape in dims.items():
        if len(shape) != 1 or shape != first:
            raise ScoringError(f"{path}: tensor {key!r} has shape {shape}; every embedding must be (D,) = {first}")
    if not table:
        raise ScoringError(f"{path}: no embeddings")
    return table


def index_trials(
    trials: Trials, keys: dict[str, np.ndarray], on_missing: str = "error"
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Trials -> (keep (T,) bool, the N keys used, enroll rows (T',), test rows (T',)) over the kept trials.

    A trial naming a key not in `keys` raises ScoringError (on_missing="error", with line and key) or is dropped
    (on_missing="skip": keep is False there)."""
    rows: dict[str, int] = {}
    keep, i, j = [], [], []
    for e, t, line in zip(trials.enroll, trials.test, trials.lines, strict=True):
        missing = [k for k in (e, t) if k not in keys]
        if missing and on_missing == "error":
            raise ScoringError(f"{trials.path} line {line}: key {missing[0]!r} is not in the embeddings file")
        keep.append(not missing)
        if not missing:
            i.append(rows.setdefault(e, len(rows)))
            j.append(rows.setdefault(t, len(rows)))
    if not rows:
        raise ScoringError(f"{trials.path}: no trial has both keys in the embeddings file")
    return np.array(keep), list(rows), np.array(i), np.array(j)


def score_trials(
    embeddings: dict[str, np.ndarray],
    trials: Trials,
    *,
    mean: np.ndarray | None = None,
    cohort: np.ndarray | None = None,
    norm: str = "as-norm",
    top_k: int = 100,
    on_missing: str = "error",
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of the kept trials (T',) and the keep mask (T,).

    mean (D,) is subtracted from every embedding, the cohort's included, before the cosine (WeSpeaker's "sub mean
    of vox2_dev"). With a cohort (K, D) the scores are normalised by `verification.as_norm`, the function the
    training-run report uses: "as-norm" over the top_k highest cohort cosines of each side, "s-norm" over all K.
    """
    keep, names, i, j = index_trials(trials, embeddings, on_missing)
    emb = np.stack([embeddings[k] for k in names])  # (N, D)
    if mean is not None:
        emb = emb - mean
        cohort = None if cohort is None else cohort - mean
    scores = verification.cosine_scores(emb, i, j)  # (T',)
    if cohort is not None:
        if norm not in ("as-norm", "s-norm"):
            raise ValueError(f"norm must be 'as-norm' or 's-norm', got {norm!r}")
        k = top_k if norm == "as-norm" else len(cohort)
        scores = verification.as_norm(scores, emb, i, j, cohort, k)
    return scores, keep


def write_scores(path: str | Path, trials: Trials, keep: np.ndarray, scores: np.ndarray) -> None:
    """`enroll test score [target|nontarget]` per kept trial, in the order of the list."""
    kept = np.flatnonzero(keep)
    with Path(path).open("w") as f:
        for n, score in zip(kept, scores, strict=True):
            label = "" if trials.labels is None else (" target" if trials.labels[n] else " nontarget")
            f.write(f"{trials.enroll[n]} {trials.test[n]} {score:.6f}{label}\n")


def read_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A labelled score file (`enroll test score label`, label target/nontarget or 1/0) -> scores, labels (bool)."""
    scores, labels = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[3] not in LABELS:
            raise ScoringError(f"{path} line {n}: expected 'enroll test score target|nontarget', got {line.strip()!r}")
        try:
            scores.append(float(fields[2]))
        except ValueError:
            raise ScoringError(f"{path} line {n}: score {fields[2]!r} is not a number") from None
        labels.append(LABELS[fields[3]])
    return np.array(scores), np.array(labels, bool)


def cllr(llr: np.ndarray, labels: np.ndarray) -> float:
    """Cllr in bits (Bruemmer & du Preez 2006, eq. 39): the mean over targets of log2(1 + e^-llr) and over
    non-targets of log2(1 + e^llr), averaged. 1 for llr = 0 everywhere; 0 for perfect, infinitely sure llrs."""
    llr, labels = np.asarray(llr, np.float64), np.asarray(labels, bool)
    miss = np.logaddexp(0.0, -llr[labels]).mean()
    false_alarm = np.logaddexp(0.0, llr[~labels]).mean()
    return float((miss + false_alarm) / (2 * math.log(2)))


def pav_llr(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The optimal monotone calibration of these trials: llr (T,) from the isotonic (PAV) fit of the labels.

    Tied scores are pooled first (they must get one llr). The PAV posterior p(score) is turned into a
    log-likelihood ratio by removing the prior of the trials: llr = logit(p) - log(N_tar / N_non). Blocks of
    targets only give +inf, of non-targets only -inf (BOSARIS `opt_loglr`)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    values, inverse = np.unique(scores, return_inverse=True)  # (G,), (T,)
    weight = np.bincount(inverse).astype(np.float64)  # trials per distinct score
    level = np.bincount(inverse, weights=labels.astype(np.float64)) / weight  # share of targets per score
    blocks: list[list[float]] = []  # [mean, weight, number of distinct scores] of each pooled block
    for m, w in zip(level, weight, strict=True):
        blocks.append([m, w, 1])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:  # pool adjacent violators (and equal levels)
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks[-1]
            blocks[-1] = [(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    p = np.repeat([b[0] for b in blocks], [b[2] for b in blocks])[inverse]  # (T,) posterior per trial
    with np.errstate(divide="ignore"):
        log_odds = np.log(p) - np.log1p(-p)
    return log_odds - math.log(labels.sum() / (~labels).sum())


def min_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr after the optimal monotone calibration (`pav_llr`): the discrimination loss alone, unchanged by any
    increasing map of the scores; Cllr - min Cllr is the calibration loss."""
    return cllr(pav_llr(scores, labels), labels)


def fit_calibration(
    scores: np.ndarray, labels: np.ndarray, prior: float = 0.5, iterations: int = 100
) -> tuple[float, float]:
    """(a, b) of llr = a s + b minimising the prior-weighted logistic objective (BOSARIS `train_llr_fusion`):

        C(a, b) = P / N_tar sum_tar log(1 + e^-z) + (1 - P) / N_non sum_non log(1 + e^z),  z = a s + b + logit P

    At P = 0.5 (the default) C is ln 2 times the Cllr of the llrs, so the fit minimises Cllr itself. Convex;
    solved by Newton's method with step halving. Dev scores that separate perfectly have no minimum (a grows
    without bound): the fit then stops after `iterations` steps."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    x = np.stack([s, np.ones_like(s)], axis=1)  # (T, 2)
    sign = np.where(y, 1.0, -1.0)  # (T,)
    weight = np.where(y, prior / y.sum(), (1 - prior) / (~y).sum())  # (T,)
    offset = math.log(prior / (1 - prior))

    def objective(w: np.ndarray) -> float:
        return float(np.sum(weight * np.logaddexp(0.0, -sign * (x @ w + offset))))

    w = np.zeros(2)
    for _ in range(iterations):
        q = 0.5 * (1 - np.tanh(0.5 * sign * (x @ w + offset)))  # sigmoid(-sign z): (T,)
        grad = -(weight * sign * q) @ x  # (2,)
        hess = (x.T * (weight * q * (1 - q))) @ x + 1e-12 * np.eye(2)  # (2, 2)
        step, t, before = np.linalg.solve(hess, grad), 1.0, objective(w)
        while objective(w - t * step) > before and t > 1e-8:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() <= 1e-12 * (1 + np.abs(w).max()):
            break
    return float(w[0]), float(w[1])
