"""Combine the per-sample scores of separately trained runs (framework-free, NumPy).

Each run gives log-probabilities (N, C) over the same classes and an embedding (N, E) for the same samples.
Scores combine as the late-fusion heads do within one model:

    mean      log(1/R sum_r p_r)                                  (average of the probabilities)
    product   log_softmax(sum_r log p_r)                          (normalised product of the probabilities)
    learned   log(sum_r w_r p_r), w on the simplex, fitted on val  (convex weights, max val likelihood)

The ensemble's embedding is the concatenation of the runs' L2-normalised embeddings scaled by sqrt(w_r), so
its cosine is the w-weighted mean of the runs' cosines (w uniform for mean and product). The weights of
`learned` are fitted on the validation split only; the test split never enters the fit. Runs without a
classifier (pair losses: no log-probabilities) combine by their embeddings alone, with uniform weights.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, logsumexp, softmax

COMBINES = ("mean", "product", "learned")


def combine_log_probs(log_probs: list[np.ndarray], combine: str, weights: np.ndarray | None = None) -> np.ndarray:
    """The ensemble's log-probabilities (N, C) from each run's (N, C); `weights` (R,) for `learned`."""
    stacked = np.stack([np.asarray(lp, np.float64) for lp in log_probs])  # (R, N, C)
    if combine == "product":
        return log_softmax(stacked.sum(0), axis=-1)
    if combine == "mean":
        weights = np.full(len(log_probs), 1.0 / len(log_probs))
    elif combine != "learned" or weights is None:
        raise ValueError(f"combine must be one of {COMBINES} (learned needs weights), got {combine!r}")
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, np.float64))  # (R,); a weight of 0 drops its run
    return logsumexp(stacked + log_w[:, None, None], axis=0)  # (N, C)


def fit_weights(log_probs: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Convex weights (R,) that maximise the likelihood of `labels` under sum_r w_r p_r, on the samples with
    a known label (>= 0); w = softmax(a), a fitted by L-BFGS from a = 0 (uniform weights)."""
    known = labels >= 0
    if not known.any():
        raise ValueError("learned weights need labelled validation samples (a closed-set split)")
    picked = np.stack([np.asarray(lp, np.float64)[known, labels[known]] for lp in log_probs])  # (R, n)

    def nll(a: np.ndarray) -> tuple[float, np.ndarray]:
        log_mix = logsumexp(picked + log_softmax(a)[:, None], axis=0)  # (n,)
        resp = np.exp(picked + log_softmax(a)[:, None] - log_mix)  # (R, n): each run's share of each sample
        return -log_mix.mean(), -(resp.mean(1) - softmax(a))  # value and gradient in a

    result = minimize(nll, np.zeros(len(log_probs)), jac=True, method="L-BFGS-B")
    return softmax(result.x)


def combine_embeddings(embeddings: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """(N, sum E_r): concatenated unit embeddings scaled by sqrt(w_r); cosine = sum_r w_r cos_r."""
    parts = []
    for e, w in zip(embeddings, weights, strict=True):
        e = np.asarray(e, np.float64)
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        parts.append(np.sqrt(w) * e / np.where(norm > 0, norm, 1.0))
    return np.concatenate(parts, axis=1).astype(np.float32)


def combine_predictions(members: list[dict], combine: str, weights: np.ndarray | None = None) -> dict:
    """One split's ensemble predictions in research/evaluation.py's format: labels and presence from the
    first member (all members predict the same samples, in the same order), log_probs (when the members have
    a classifier) and embedding combined."""
    first = members[0]
    if weights is None:
        weights = np.full(len(members), 1.0 / len(members))
    combined = {k: v for k, v in first.items() if isinstance(v, np.ndarray) and v.ndim == 1}  # labels, presence
    if "log_probs" in first:
        log_probs = [m["log_probs"] for m in members]
        combined["log_probs"] = combine_log_probs(log_probs, combine, weights).astype(np.float32)
    combined["embedding"] = combine_embeddings([m["embedding"] for m in members], weights)
    return combined
