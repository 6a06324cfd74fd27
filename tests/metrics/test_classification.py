"""Classification metrics against scikit-learn; per-subject voting on a hand-built example."""

import numpy as np
import pytest
from sklearn import metrics as skm

from research.metrics import classification as C


def random_case(seed=0, n=200, n_classes=6):
    """Labels miss class 5, predictions hit it: the cases where macro averages differ most."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes - 1, n)
    log_probs = np.log(rng.dirichlet(np.ones(n_classes), n))  # (n, C)
    log_probs[np.arange(n), labels] += rng.random(n) < 0.5  # make it better than chance
    return log_probs, labels


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_sklearn(seed):
    log_probs, labels = random_case(seed)
    pred = log_probs.argmax(axis=1)
    assert C.accuracy(log_probs, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    assert C.balanced_accuracy(log_probs, labels) == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert C.macro_f1(pred, labels) == pytest.approx(skm.f1_score(labels, pred, average="macro", zero_division=0))
    np.testing.assert_array_equal(
        C.confusion_matrix(pred, labels, 6), skm.confusion_matrix(labels, pred, labels=range(6))
    )
    recall = skm.recall_score(labels, pred, labels=range(5), average=None)
    per_class = C.per_class_accuracy(log_probs, labels, 6)
    np.testing.assert_allclose(per_class[:5], recall)
    assert np.isnan(per_class[5])  # class 5 has no sample


def test_classification_metrics_keys():
    labels = np.array([0, 0, 1, 1])
    assert C.classification_metrics(np.array([0, 0, 0, 1]), labels) == pytest.approx(
        {"acc": 0.75, "balanced_acc": 0.75, "macro_f1": (0.8 + 2 / 3) / 2}
    )


def test_per_subject_sums_probabilities():
    # Subject 7: argmax votes 1, 1, 0 but summed probabilities (1.7 vs 1.3) pick class 0.
    probs = np.array([[0.4, 0.6], [0.4, 0.6], [0.9, 0.1], [0.2, 0.8]])
    subjects = np.array([7, 7, 7, 2])
    labels = np.array([0, 0, 0, 1])
    ids, pred, label = C.per_subject(np.log(probs), labels, subjects)
    np.testing.assert_array_equal(ids, [2, 7])
    np.testing.assert_array_equal(pred, [1, 0])
    np.testing.assert_array_equal(label, [1, 0])
    with pytest.raises(ValueError, match="one label per subject"):
        C.per_subject(np.log(probs), np.array([0, 1, 0, 1]), subjects)
