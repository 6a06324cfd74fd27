"""Pair accuracy at a threshold, the validation threshold of highest accuracy, and face-voice verification,
against plain NumPy and scikit-learn computations."""

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from research.evaluation import evaluate
from research.metrics import crossmodal, verification


def scored_trials(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounded: many ties
    return scores, labels


def test_pair_accuracy_counts_accepted_targets_and_rejected_non_targets():
    scores, labels = scored_trials(0)
    for t in (-0.5, 0.3, 0.3000001, 2.0):
        right = sum((s >= t and y) or (s < t and not y) for s, y in zip(scores, labels, strict=True))
        assert verification.pair_accuracy(scores, labels, t) == right / len(scores)


def test_accuracy_threshold_is_the_best_of_every_candidate():
    for seed in range(5):
        scores, labels = scored_trials(seed)
        candidates = [np.inf, *np.unique(scores)]
        accuracy = [np.mean((scores >= t) == labels) for t in candidates]
        best = max(accuracy)
        t = verification.accuracy_threshold(scores, labels)
        assert np.mean((scores >= t) == labels) == best
        assert t == max(c for c, a in zip(candidates, accuracy, strict=True) if a == best)  # highest on a tie


def test_cross_modal_verification_scores_face_i_against_voice_j():
    rng = np.random.default_rng(1)
    subjects = np.repeat(np.arange(12), 4)
    person = rng.normal(size=(12, 8))
    face = person[subjects] + rng.normal(scale=1.0, size=(48, 8))
    voice = person[subjects] @ rng.normal(scale=0.3, size=(8, 8)) + person[subjects] + rng.normal(size=(48, 8))
    got = crossmodal.verification(face, voice, subjects, n_trials=400, seed=3)
    i, j, target = verification.make_trials(subjects, 400, 3)
    f = face / np.linalg.norm(face, axis=1, keepdims=True)
    v = voice / np.linalg.norm(voice, axis=1, keepdims=True)
    scores = (f[i] * v[j]).sum(axis=1)
    fpr, tpr, _ = roc_curve(target, scores, drop_intermediate=False)
    k = np.argmax(1 - tpr <= fpr)  # first ROC point past the crossing; interpolate FNR = FPR on the segment
    d0, d1 = (1 - tpr[k - 1]) - fpr[k - 1], (1 - tpr[k]) - fpr[k]
    expected = fpr[k - 1] + d0 / (d0 - d1) * (fpr[k] - fpr[k - 1])
    assert abs(got["eer"] - expected) < 1e-12
    assert abs(got["auc"] - roc_auc_score(target, scores)) < 1e-12
    assert got["eer"] < 0.4  # the shared person vector makes face and voice of one subject closer


def test_evaluate_reports_test_pair_accuracy_at_the_given_threshold(tmp_path):
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(10) + 100, 5)
    emb = rng.normal(size=(10, 6))[subjects - 100] + rng.normal(scale=0.8, size=(50, 6))
    preds = {"target": np.full(50, -1), "embedding": emb, "subject": subjects}
    kw = {"train_subjects": np.arange(5), "plots": False, "n_trials": 300, "seed": 0}
    own = evaluate(preds, {}, tmp_path / "a", **kw)
    fixed = evaluate(preds, {}, tmp_path / "b", threshold=0.25, **kw)
    assert "acc" not in own, "no log_probs: no closed-set metrics"
    i, j, target = verification.make_trials(subjects, 300, 0)
    scores = verification.cosine_scores(emb, i, j)
    assert fixed["threshold"] == 0.25
    assert fixed["pair_acc"] == np.mean((scores >= 0.25) == target)
    assert own["pair_acc"] == max(np.mean((scores >= t) == target) for t in np.unique(scores))
