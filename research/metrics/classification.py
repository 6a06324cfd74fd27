"""Closed-set classification metrics and per-subject aggregation.

Every metric takes `pred`: either predicted class indices (N,) or decision log-scores (N, C), whose
argmax is the prediction. Definitions follow scikit-learn (confusion_matrix, balanced_accuracy_score,
f1_score(average="macro")).
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax


def predictions(pred: np.ndarray) -> np.ndarray:
    """Class indices (N,): `pred` itself, or the argmax of log-scores (N, C)."""
    pred = np.asarray(pred)
    return pred.argmax(axis=1) if pred.ndim == 2 else pred


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose prediction equals the label."""
    return float(np.mean(predictions(pred) == labels))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted class."""
    flat = np.asarray(labels) * n_classes + predictions(pred)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (C,): correct / support; NaN for a class with no sample."""
    cm = confusion_matrix(pred, labels, n_classes)
    support = cm.sum(axis=1)
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present in `labels`."""
    pred = predictions(pred)
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def macro_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over classes seen in labels or predictions of F1 = 2TP / (2TP + FP + FN)."""
    pred = predictions(pred)
    classes = np.union1d(labels, pred)
    tp = np.array([np.sum((pred == c) & (labels == c)) for c in classes])
    fp = np.array([np.sum((pred == c) & (labels != c)) for c in classes])
    fn = np.array([np.sum((pred != c) & (labels == c)) for c in classes])
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))


def classification_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The reported set: accuracy, balanced accuracy and macro-F1."""
    return {
        "acc": accuracy(pred, labels),
        "balanced_acc": balanced_accuracy(pred, labels),
        "macro_f1": macro_f1(pred, labels),
    }


def per_subject(
    log_probs: np.ndarray, labels: np.ndarray, subjects: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vote per subject: the class with the largest sum of probabilities over the subject's samples.

    Probabilities are softmax(log_probs) per sample (= exp(log_probs) for log-probabilities). Returns
    (subject ids (S,), predicted class (S,), label (S,)); a subject whose samples disagree on the label
    is an error, since one vote cannot be right for both.
    """
    ids, inverse = np.unique(subjects, return_inverse=True)
    summed = np.zeros((len(ids), log_probs.shape[1]))  # (S, C)
    np.add.at(summed, inverse, softmax(log_probs, axis=1))
    subject_labels = np.zeros(len(ids), np.asarray(labels).dtype)
    subject_labels[inverse] = labels
    if np.any(subject_labels[inverse] != labels):
        raise ValueError("per-subject aggregation needs one label per subject; some subjects have several")
    return ids, summed.argmax(axis=1), subject_labels
