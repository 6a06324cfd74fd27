"""Cross-modal (face <-> voice) matching and retrieval on embeddings that share one space.

Similarity is the cosine between a face embedding and a voice embedding (both (N, E), row n from sample n).
"""

from __future__ import annotations

import numpy as np

from research.metrics.verification import make_trials, normalise, verification_metrics


def matching_1to2(
    face_emb: np.ndarray, voice_emb: np.ndarray, subjects: np.ndarray, n: int = 1000, seed: int = 0
) -> dict[str, float]:
    """1:2 matching accuracy in both directions (Nagrani et al. 2018, "Seeing voices and hearing faces").

    Each of n tasks draws an anchor sample a, a positive p: another sample of a's subject, and a negative
    q: a sample of another subject. v2f: is voice[a] closer to face[p] than to face[q]? f2v: is face[a]
    closer to voice[p] than to voice[q]? A tie counts 1/2. Chance is 0.5. Fixed by the seed.
    """
    if face_emb.shape[1] != voice_emb.shape[1]:
        raise ValueError("face and voice embeddings must share one space (same width)")
    a, p, q = _tasks(np.asarray(subjects), n, np.random.default_rng(seed))
    face, voice = normalise(face_emb), normalise(voice_emb)
    return {"v2f": _pick(voice[a], face[p], face[q]), "f2v": _pick(face[a], voice[p], voice[q])}


def _pick(query: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    s_pos, s_neg = np.sum(query * pos, axis=1), np.sum(query * neg, axis=1)  # (n,)
    return float(np.mean((s_pos > s_neg) + 0.5 * (s_pos == s_neg)))


def _tasks(subjects: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors from subjects with >= 2 samples, a different sample of the same subject, another subject."""
    order = np.argsort(subjects, kind="stable")
    ids, start, count = np.unique(subjects[order], return_index=True, return_counts=True)
    group = np.searchsorted(ids, subjects)  # (N,) subject index of each sample
    rank = np.empty(len(subjects), np.int64)
    rank[order] = np.arange(len(subjects)) - start[group[order]]  # position within its subject
    eligible = np.flatnonzero(count[group] >= 2)
    if eligible.size == 0 or len(ids) < 2:
        raise ValueError("1:2 matching needs a subject with two samples and at least two subjects")
    a = rng.choice(eligible, n)
    g = group[a]
    shift = 1 + rng.integers(0, count[g] - 1)  # 1 .. count - 1: never the anchor itself
    p = order[start[g] + (rank[a] + shift) % count[g]]
    q = rng.integers(0, len(subjects), n)
    while np.any(same := subjects[q] == subjects[a]):
        q[same] = rng.integers(0, len(subjects), same.sum())
    return a, p, q


def retrieval(
    query: np.ndarray, gallery: np.ndarray, q_subjects: np.ndarray, g_subjects: np.ndarray
) -> dict[str, float]:
    """Rank the gallery by cosine to each query; relevant = same subject.

    recall@k: share of queries with a relevant item among the k first; mAP: mean over queries of the
    average precision (mean of precision@rank over the ranks of the relevant items). Queries without a
    relevant item in the gallery are left out; ties in similarity keep gallery order. Memory is Q x G.
    """
    sim = normalise(query) @ normalise(gallery).T  # (Q, G)
    order = np.argsort(-sim, axis=1, kind="stable")
    relevant = np.asarray(g_subjects)[order] == np.asarray(q_subjects)[:, None]  # (Q, G) in rank order
    relevant = relevant[relevant.any(axis=1)]
    if len(relevant) == 0:
        raise ValueError("no query has a relevant gallery item")
    precision = np.cumsum(relevant, axis=1) / np.arange(1, relevant.shape[1] + 1)  # (Q, G) precision@rank
    ap = (precision * relevant).sum(axis=1) / relevant.sum(axis=1)
    return {
        "recall@1": float(relevant[:, :1].any(axis=1).mean()),
        "recall@5": float(relevant[:, :5].any(axis=1).mean()),
        "map": float(ap.mean()),
    }


def verification(
    face_emb: np.ndarray, voice_emb: np.ndarray, subjects: np.ndarray, n_trials: int, seed: int = 0
) -> dict[str, float]:
    """Cross-modal verification: is the face of sample i the same person as the voice of sample j? Trials
    (i, j) of distinct samples from `make_trials` (half same subject), scored cos(face_i, voice_j); returns
    `verification_metrics` (EER, minDCF, TAR@FAR, AUC)."""
    if face_emb.shape[1] != voice_emb.shape[1]:
        raise ValueError("face and voice embeddings must share one space (same width)")
    i, j, target = make_trials(np.asarray(subjects), n_trials, seed)
    scores = np.einsum("te,te->t", normalise(face_emb)[i], normalise(voice_emb)[j])  # (T,)
    return verification_metrics(scores, target)
