"""Open-set verification: trial lists, cosine scoring, AS-norm, EER, minDCF, TAR@FAR and ROC AUC.

Convention: a higher score means "more likely the same person"; a trial is accepted when its score is
>= a threshold t. Only thresholds the scores can realise are used: t = +inf (reject everything) and each
distinct score. Tied scores therefore move together, which is what makes ties and all-equal score sets
well defined (see docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from research.config import EvalConfig


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds) of `accept if score >= t`, for t = +inf then each distinct score
    in decreasing order. Same points as sklearn's roc_curve(drop_intermediate=False)."""
    scores, labels = _check(scores, labels)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last trial of each block of tied scores
    tp = np.r_[0, np.cumsum(y)[last]]
    fp = np.r_[0, np.cumsum(~y)[last]]
    return fp / fp[-1], tp / tp[-1], np.r_[np.inf, s[last]]


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold.

    The ROC points are joined by straight lines (between two thresholds, accepting a random share of the
    trials tied at the lower one realises every point of the segment); the EER is where FNR = 1 - TPR
    meets FPR on that curve. FNR - FPR falls monotonically from 1 to -1 along the points, so the crossing
    lies on the first segment where it becomes <= 0. The threshold returned is that segment's lower end
    (the score whose tied trials are partly accepted). Perfect separation gives 0, all-equal scores 0.5.
    The sign of FNR - FPR is decided in trial counts: in rates, 1 - 1/3 and 2/3 differ by a rounding error,
    which moved an exact crossing to the next score.
    """
    fpr, tpr, thresholds = roc(scores, labels)
    n_tar, n_non = int(np.sum(labels)), len(labels) - int(np.sum(labels))
    fn, fp = n_tar - np.rint(tpr * n_tar), np.rint(fpr * n_non)  # trial counts at each threshold
    d = fn * n_non - fp * n_tar  # (FNR - FPR) * n_tar * n_non, exact integers
    k = int(np.argmax(d <= 0))
    a = d[k - 1] / (d[k - 1] - d[k])  # share of the way from point k-1 to point k
    return float(fpr[k - 1] + a * (fpr[k] - fpr[k - 1])), float(thresholds[k])


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE): min over thresholds of
    DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t),
    divided by min(c_miss * p_target, c_fa * (1 - p_target)), the cost of always accepting or always
    rejecting. Both of those are among the thresholds, so the result lies in [0, 1]."""
    fpr, tpr, _ = roc(scores, labels)
    dcf = c_miss * p_target * (1 - tpr) + c_fa * (1 - p_target) * fpr
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """True accept rate at a false accept rate: the largest TPR over realisable thresholds whose FPR <= far.
    A threshold cannot split tied scores, so ties with non-targets can only lower it; 0 when no threshold
    but +inf meets the FAR. Meaningful only with >= 1/far non-target trials."""
    fpr, tpr, _ = roc(scores, labels)
    return float(tpr[fpr <= far].max())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC = P(target score > non-target score) + 0.5 P(equal) (Mann-Whitney U with
    average ranks for ties)."""
    scores, labels = _check(scores, labels)
    n_tar, n_non = labels.sum(), (~labels).sum()
    ranks = rankdata(scores)  # ties get their average rank
    return float((ranks[labels].sum() - n_tar * (n_tar + 1) / 2) / (n_tar * n_non))


def pair_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of trials decided right when a trial is accepted as "same person" at score >= threshold."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    return float(np.mean((scores >= threshold) == labels))


def accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The realisable threshold (+inf or a distinct score) of highest pair accuracy on these trials, the highest
    such threshold on a tie: chosen on validation trials, it gives the test pair accuracy (the protocol of
    LFW-style verification accuracy)."""
    fpr, tpr, thresholds = roc(scores, labels)
    n_target = np.asarray(labels, bool).sum()
    correct = tpr * n_target + (1 - fpr) * (len(labels) - n_target)  # accepted targets + rejected non-targets
    return float(thresholds[int(np.argmax(correct))])


def verification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The reported set: EER, minDCF at p_target 0.01 and 0.05, TAR at FAR 1e-2 and 1e-3, ROC AUC."""
    return {
        "eer": eer(scores, labels)[0],
        "min_dcf_0.01": min_dcf(scores, labels, 0.01),
        "min_dcf_0.05": min_dcf(scores, labels, 0.05),
        "tar@far=1e-2": tar_at_far(scores, labels, 1e-2),
        "tar@far=1e-3": tar_at_far(scores, labels, 1e-3),
        "auc": roc_auc(scores, labels),
    }


def make_trials(subjects: np.ndarray, n_trials: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A balanced trial list (i, j, is_target) of distinct sample pairs, fixed by the seed.

    Half the trials are target pairs (same subject) drawn without replacement from all such pairs, half
    non-target pairs drawn uniformly without replacement from all pairs of different subjects. When fewer
    pairs exist than n_trials // 2, both halves shrink to the smaller count so the list stays balanced.
    """
    subjects = np.asarray(subjects)
    rng = np.random.default_rng(seed)
    targets = _target_pairs(subjects)  # (P, 2)
    n_pairs = len(subjects) * (len(subjects) - 1) // 2
    n = min(n_trials // 2, len(targets), n_pairs - len(targets))
    if n == 0:
        raise ValueError("trials need a subject with two samples and two distinct subjects")
    tar = targets[rng.choice(len(targets), n, replace=False)]
    non = _non_target_pairs(subjects, n, rng)
    i = np.r_[tar[:, 0], non[:, 0]]
    j = np.r_[tar[:, 1], non[:, 1]]
    return i, j, np.r_[np.ones(n, bool), np.zeros(n, bool)]


def _target_pairs(subjects: np.ndarray) -> np.ndarray:
    pairs = [np.zeros((0, 2), np.int64)]
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        a, b = np.triu_indices(len(idx), k=1)
        pairs.append(np.stack([idx[a], idx[b]], axis=1))
    return np.concatenate(pairs)


def _non_target_pairs(subjects: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct pairs (a < b) of different subjects: draw, drop same-subject and repeated pairs, redraw."""
    size = len(subjects)
    codes = np.zeros(0, np.int64)  # pair (a, b) is coded a * size + b
    while len(codes) < n:
        a, b = rng.integers(0, size, (2, 2 * n))
        keep = subjects[a] != subjects[b]
        new = np.minimum(a, b)[keep] * size + np.maximum(a, b)[keep]
        codes = np.r_[codes, new]
        _, first = np.unique(codes, return_index=True)
        codes = codes[np.sort(first)][:n]  # first occurrences, in draw order
    return np.stack([codes // size, codes % size], axis=1)


def normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    emb = np.asarray(emb, np.float64)
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norm, 1e-12)


def cosine_scores(emb: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings. emb (N, E) -> (T,)."""
    e = normalise(emb)
    return np.einsum("te,te->t", e[i], e[j])


def class_means(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the L2-normalised embeddings of each class, with the class ids: (K, E), (K,).
    Built from training embeddings and subjects, this is the AS-norm cohort `verify` expects."""
    ids, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(ids), emb.shape[1]))
    np.add.at(sums, inverse, normalise(emb))
    return sums / np.bincount(inverse)[:, None], ids


def as_norm(
    scores: np.ndarray,
    emb: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    cohort: np.ndarray,
    top_k: int = EvalConfig.as_norm_top_k,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm1, Matejka et al. 2017):

        s' = ((s - mu_i) / sd_i + (s - mu_j) / sd_j) / 2

    where mu_x, sd_x are the mean and (population) std of the top_k highest cosines between sample x and
    the cohort embeddings. The cohort must come from training identities, never from the evaluated set.
    """
    k = min(top_k, len(cohort))
    if k < 2:
        raise ValueError("AS-norm needs top_k >= 2 and a cohort of at least two embeddings")
    cos = normalise(emb) @ normalise(cohort).T  # (N, K)
    top = np.partition(cos, cos.shape[1] - k, axis=1)[:, -k:]  # (N, k) highest cohort scores
    mu, sd = top.mean(axis=1), top.std(axis=1)
    return 0.5 * ((scores - mu[i]) / sd[i] + (scores - mu[j]) / sd[j])


def verify(
    emb: np.ndarray,
    subjects: np.ndarray,
    train_subjects: np.ndarray,
    n_trials: int = EvalConfig.trials,
    seed: int = 0,
    cohort: tuple[np.ndarray, np.ndarray] | None = None,
    top_k: int = EvalConfig.as_norm_top_k,
    trials: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Open-set verification of embeddings (N, E) on identities never seen in training.

    Refuses (ValueError) a split that shares a subject with `train_subjects`, and an AS-norm cohort
    (embeddings (K, E), their subjects (K,), e.g. from `class_means`) holding a non-training subject.
    `trials` = (i, j, target) scores exactly those pairs (an official list such as VoxCeleb1-O) instead
    of a balanced list drawn by `make_trials`.
    Returns the metrics of `verification_metrics` and the trials {"i", "j", "target", "score"}.
    """
    overlap = np.intersect1d(subjects, train_subjects)
    if overlap.size:
        raise ValueError(
            f"open-set verification needs identities unseen in training, but {overlap.size} evaluated "
            f"subjects are training subjects (e.g. {overlap[:5].tolist()})"
        )
    i, j, target = make_trials(subjects, n_trials, seed) if trials is None else trials
    scores = cosine_scores(emb, i, j)
    if cohort is not None:
        cohort_emb, cohort_subjects = cohort
        outside = np.setdiff1d(cohort_subjects, train_subjects)
        if outside.size:
            raise ValueError(f"the AS-norm cohort must hold training identities only; got {outside[:5].tolist()}")
        scores = as_norm(scores, emb, i, j, cohort_emb, top_k)
    return verification_metrics(scores, target), {"i": i, "j": j, "target": target, "score": scores}


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of one length, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if labels.all() or not labels.any():
        raise ValueError("need at least one target and one non-target trial")
    return scores, labels
