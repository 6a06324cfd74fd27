"""Verification metrics against scikit-learn, brute-force references written here, and hand-worked cases."""

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from research.metrics import verification as V


def score_sets():
    """(scores, labels) pairs: random, heavily tied, all equal, perfectly separated, inverted."""
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    random = rng.normal(size=300) + labels
    tied = np.round(random)  # a handful of distinct values, many ties across classes
    two = np.array([1, 1, 0, 0], bool)
    return {
        "random": (random, labels),
        "tied": (tied, labels),
        "all_equal": (np.full(300, 0.3), labels),
        "separated": (np.where(labels, 2.0, -1.0) + 0.01 * rng.random(300), labels),
        "inverted": (np.array([0.0, 1.0, 2.0, 3.0]), two),
    }


CASES = list(score_sets())


def eer_reference(scores, labels):
    """Where FNR and FPR meet on sklearn's (piecewise-linear) ROC, found by a root finder."""
    fpr, tpr, _ = roc_curve(labels, scores)
    steps = np.arange(len(fpr))
    gap = lambda x: np.interp(x, steps, 1 - tpr) - np.interp(x, steps, fpr)  # noqa: E731
    x = brentq(gap, 0, len(fpr) - 1, xtol=1e-12)
    return np.interp(x, steps, fpr)


def min_dcf_reference(scores, labels, p, c_miss=1.0, c_fa=1.0):
    tar, non = scores[labels], scores[~labels]
    costs = [
        c_miss * p * np.mean(tar < t) + c_fa * (1 - p) * np.mean(non >= t) for t in np.r_[np.unique(scores), np.inf]
    ]
    return min(costs) / min(c_miss * p, c_fa * (1 - p))


@pytest.mark.parametrize("case", CASES)
def test_roc_points_match_sklearn(case):
    scores, labels = score_sets()[case]
    fpr, tpr, thr = V.roc(scores, labels)
    ref_fpr, ref_tpr, ref_thr = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_array_equal(thr[1:], ref_thr[1:])  # sklearn's first threshold is +inf too
    assert thr[0] == np.inf


@pytest.mark.parametrize("case", CASES)
def test_eer_matches_crossing_on_sklearn_roc(case):
    scores, labels = score_sets()[case]
    assert V.eer(scores, labels)[0] == pytest.approx(eer_reference(scores, labels), abs=1e-9)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("p, c_miss, c_fa", [(0.01, 1, 1), (0.05, 1, 1), (0.3, 2, 1), (0.5, 1, 10)])
def test_min_dcf_matches_brute_force(case, p, c_miss, c_fa):
    scores, labels = score_sets()[case]
    expected = min_dcf_reference(scores, labels, p, c_miss, c_fa)
    assert V.min_dcf(scores, labels, p, c_miss, c_fa) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.1, 0.5])
def test_tar_at_far_matches_sklearn(case, far):
    scores, labels = score_sets()[case]
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert V.tar_at_far(scores, labels, far) == pytest.approx(tpr[fpr <= far].max())


@pytest.mark.parametrize("case", CASES)
def test_auc_matches_sklearn(case):
    scores, labels = score_sets()[case]
    assert V.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_hand_worked_tied_example():
    # targets 3 2 2 1, non-targets 2 2 1 0. ROC points (fpr, tpr): (0,0) (0,.25) (.5,.75) (.75,1) (1,1).
    # FNR - FPR: 1, .75, -.25 -> crossing 3/4 of the way from (0, .75) to (.5, .25): EER .375 at t = 2.
    scores = np.array([3, 2, 2, 1, 2, 2, 1, 0], float)
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    assert V.eer(scores, labels) == pytest.approx((0.375, 2.0))
    # AUC: target 3 beats 4, each 2 beats 2 and ties 2 (3), 1 beats 1 and ties 1 (1.5): 11.5 / 16.
    assert V.roc_auc(scores, labels) == pytest.approx(11.5 / 16)


def test_hand_worked_min_dcf():
    # p = .5: costs .5, .333 (t=.9), .1667 (.6), .2917 (.5), .125 (.4), ... -> min .125 / .5 = .25
    scores = np.array([0.9, 0.6, 0.4, 0.5, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    assert V.min_dcf(scores, labels, 0.5) == pytest.approx(0.25)


def test_extreme_score_sets():
    labels = np.array([1, 1, 0, 0, 0], bool)
    equal = np.zeros(5)
    assert V.eer(equal, labels)[0] == pytest.approx(0.5)
    assert V.min_dcf(equal, labels, 0.01) == pytest.approx(1.0)
    assert V.tar_at_far(equal, labels, 0.5) == 0.0  # the only finite threshold accepts every non-target
    assert V.roc_auc(equal, labels) == pytest.approx(0.5)
    separated = np.array([0.9, 0.8, 0.2, 0.1, 0.0])
    assert V.eer(separated, labels) == pytest.approx((0.0, 0.8))
    assert V.min_dcf(separated, labels, 0.01) == 0.0
    assert V.tar_at_far(separated, labels, 1e-3) == 1.0
    assert V.roc_auc(separated, labels) == 1.0


def test_tar_at_far_cannot_split_ties():
    # 100 non-targets: one tied with two targets at 3, the others at 0; targets 5 4 3 3.
    labels = np.r_[np.ones(4, bool), np.zeros(100, bool)]
    scores = np.r_[5, 4, 3, 3, 3, np.zeros(99)]
    assert V.tar_at_far(scores, labels, 1e-2) == 1.0  # t = 3: FAR exactly 1/100
    assert V.tar_at_far(scores, labels, 1e-3) == 0.5  # t = 4
    scores[5] = 3  # a second tied non-target: t = 3 now costs FAR .02
    assert V.tar_at_far(scores, labels, 1e-2) == 0.5


def test_metrics_refuse_one_class():
    with pytest.raises(ValueError, match="target and one non-target"):
        V.eer(np.arange(3.0), np.ones(3, bool))


def test_trials_balanced_valid_and_fixed_by_seed():
    subjects = np.repeat(np.arange(10), 6)  # 10 subjects x 6 samples: 150 target pairs
    i, j, target = V.make_trials(subjects, 200, seed=3)
    assert target.sum() == (~target).sum() == 100
    assert np.all(i != j)
    np.testing.assert_array_equal(target, subjects[i] == subjects[j])
    pairs = {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist(), strict=True)}
    assert len(pairs) == 200  # no pair twice
    again = V.make_trials(subjects, 200, seed=3)
    for a, b in zip((i, j, target), again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(V.make_trials(subjects, 200, seed=4)[1], j)


def test_trials_shrink_to_stay_balanced():
    i, j, target = V.make_trials(np.array([0, 0, 1, 1]), 100, seed=0)  # 2 target and 4 non-target pairs
    assert target.sum() == (~target).sum() == 2
    with pytest.raises(ValueError):
        V.make_trials(np.arange(5), 10, seed=0)  # nobody has two samples


def test_cosine_scores():
    emb = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(V.cosine_scores(emb, np.array([0, 0, 1]), np.array([1, 2, 2])), [0.6, -0.8, 0.0])


def test_as_norm_matches_loop_reference():
    rng = np.random.default_rng(1)
    emb, cohort = rng.normal(size=(12, 5)), rng.normal(size=(9, 5))
    i, j = rng.integers(0, 12, 20), rng.integers(0, 12, 20)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731

    def reference(k):
        out = []
        for a, b in zip(i, j, strict=True):
            s = unit(emb[a]) @ unit(emb[b])
            top_a = sorted((unit(emb[a]) @ unit(c) for c in cohort), reverse=True)[:k]
            top_b = sorted((unit(emb[b]) @ unit(c) for c in cohort), reverse=True)[:k]
            out.append(0.5 * ((s - np.mean(top_a)) / np.std(top_a) + (s - np.mean(top_b)) / np.std(top_b)))
        return out

    scores = V.cosine_scores(emb, i, j)
    np.testing.assert_allclose(V.as_norm(scores, emb, i, j, cohort, top_k=4), reference(4))
    np.testing.assert_allclose(V.as_norm(scores, emb, i, j, cohort, top_k=50), reference(9))  # capped


def test_class_means():
    emb = np.array([[2.0, 0.0], [0.0, 5.0], [0.0, 1.0]])
    means, ids = V.class_means(emb, np.array([7, 3, 7]))
    np.testing.assert_array_equal(ids, [3, 7])
    np.testing.assert_allclose(means, [[0.0, 1.0], [0.5, 0.5]])


def separable(subjects, dim=16, seed=0):
    """Each subject a random direction plus small noise: verification is perfect."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(subjects.max() + 1, dim))
    return centres[subjects] + 0.01 * rng.normal(size=(len(subjects), dim))


def test_verify_perfect_embeddings_and_refusals():
    subjects = np.repeat(np.arange(20, 30), 4)
    emb = separable(subjects)
    metrics, trials = V.verify(emb, subjects, train_subjects=np.arange(20), n_trials=100, seed=0)
    assert set(metrics) == {"eer", "min_dcf_0.01", "min_dcf_0.05", "tar@far=1e-2", "tar@far=1e-3", "auc"}
    assert metrics["eer"] == 0.0 and metrics["auc"] == 1.0
    np.testing.assert_allclose(trials["score"], V.cosine_scores(emb, trials["i"], trials["j"]))
    with pytest.raises(ValueError, match="unseen in training"):
        V.verify(emb, subjects, train_subjects=np.arange(26), n_trials=100, seed=0)  # 20..25 overlap
    cohort_from_test = V.class_means(emb, subjects)
    with pytest.raises(ValueError, match="training identities only"):
        V.verify(emb, subjects, np.arange(20), n_trials=100, seed=0, cohort=cohort_from_test)


def test_cohort_guard_refuses_one_test_identity_among_all_training_ones_and_accepts_a_subset():
    """The guard's set difference must be cohort minus training: a reversed difference passes a cohort of
    every training identity plus a test identity, and refuses a strict subset of the training ones."""
    train = np.repeat(np.arange(20), 3)
    subjects = np.repeat(np.arange(20, 30), 4)
    emb = separable(np.r_[train, subjects])
    test_emb = emb[len(train) :]
    cohort_emb, cohort_ids = V.class_means(emb, np.r_[train, subjects])
    leaky = (cohort_emb[:21], cohort_ids[:21])  # training identities 0..19 and test identity 20
    assert set(leaky[1]) == set(range(20)) | {20}
    with pytest.raises(ValueError, match=r"training identities only; got \[20\]"):
        V.verify(test_emb, subjects, np.arange(20), n_trials=100, seed=0, cohort=leaky)
    subset = (cohort_emb[5:15], cohort_ids[5:15])  # training identities 5..14 only
    _, trials = V.verify(test_emb, subjects, np.arange(20), n_trials=100, seed=0, cohort=subset)
    raw = V.cosine_scores(test_emb, trials["i"], trials["j"])
    np.testing.assert_allclose(trials["score"], V.as_norm(raw, test_emb, trials["i"], trials["j"], subset[0]))


def test_verify_with_training_cohort():
    train = np.repeat(np.arange(20), 3)
    subjects = np.repeat(np.arange(20, 30), 4)
    emb = separable(np.r_[train, subjects])
    cohort = V.class_means(emb[: len(train)], train)
    metrics, trials = V.verify(emb[len(train) :], subjects, np.arange(20), n_trials=100, seed=0, cohort=cohort)
    raw = V.cosine_scores(emb[len(train) :], trials["i"], trials["j"])
    expected = V.as_norm(raw, emb[len(train) :], trials["i"], trials["j"], cohort[0], top_k=200)
    np.testing.assert_allclose(trials["score"], expected)
    assert metrics["eer"] == 0.0


def test_eer_threshold_at_an_exact_crossing():
    # FNR = FPR = 2/3 exactly at score 1.9 (in rates, 1 - 1/3 > 2/3 by a rounding error): the crossing is there,
    # as WeSpeaker's compute_eer finds it, not at the next score (0.5, where FPR is already 1).
    scores = np.array([3.0, 2.0, 1.9, 0.5, -1.0, -2.0])
    labels = np.array([1, 0, 0, 0, 1, 1], bool)
    assert V.eer(scores, labels) == pytest.approx((2 / 3, 1.9))
