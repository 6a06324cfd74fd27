"""evaluate() end to end on a small synthetic prediction set, checked against independent computations."""

import csv
import json

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from research.evaluation import evaluate
from research.metrics.verification import class_means

CLASSES = {
    "identity": [f"id{k}" for k in range(12)],
    "gender": ["f", "m"],
    "age": ["young", "mid", "old"],
    "group": ["a", "b"],
}


def synthetic_preds(subjects, closed=True, seed=0):
    """Noisy per-subject embeddings; identity log-probs from cosines to the subject centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(subjects.max() + 1, 16))
    emb = centres[subjects] + 0.8 * rng.normal(size=(len(subjects), 16))  # (N, 16)
    ids = subjects % 12
    return {
        "log_probs": log_softmax(2.0 * emb @ centres[:12].T / 4, axis=1),  # (N, 12)
        "target": ids if closed else np.full(len(subjects), -1),
        "embedding": emb,
        "subject": subjects,
        "identity": ids,
        "gender": ids % 2,
        "age": ids % 3,
        "group": (ids // 2) % 2,
        "face_present": rng.random(len(subjects)) < 0.9,
        "voice_present": np.ones(len(subjects), bool),
        "face_embedding": emb + 0.3 * rng.normal(size=emb.shape),
        "voice_embedding": emb + 0.3 * rng.normal(size=emb.shape),
    }


def test_closed_set(tmp_path):
    preds = synthetic_preds(np.repeat(np.arange(12), 5))
    result = evaluate(preds, CLASSES, tmp_path, target="identity", seed=0)
    pred, target = preds["log_probs"].argmax(axis=1), preds["target"]
    assert result["acc"] == pytest.approx(accuracy_score(target, pred))
    assert result["balanced_acc"] == pytest.approx(balanced_accuracy_score(target, pred))
    assert result["macro_f1"] == pytest.approx(f1_score(target, pred, average="macro"))
    # Per subject: argmax of summed probabilities, one vote per subject.
    votes = [np.exp(preds["log_probs"][preds["subject"] == s]).sum(axis=0).argmax() == s for s in range(12)]
    assert result["subject_acc"] == pytest.approx(np.mean(votes))
    female, male = preds["gender"] == 0, preds["gender"] == 1
    acc_f, acc_m = accuracy_score(target[female], pred[female]), accuracy_score(target[male], pred[male])
    assert result["fair/gender/acc/f"] == pytest.approx(acc_f)
    assert result["fair/gender/acc/gap"] == pytest.approx(abs(acc_f - acc_m))
    assert "fair/gender+age/acc/m&old" in result
    for key in ("match/v2f", "match/f2v", "retrieval/v2f/recall@1", "retrieval/f2v/map"):
        assert 0.5 < result[key] <= 1.0  # embeddings share one space: well above chance
    assert "eer" not in result and not (tmp_path / "trials.csv").exists()  # no open-set protocol asked
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["metrics"] == pytest.approx(result)
    assert record["dataset"]["histograms"]["gender"] == {"f": 30, "m": 30}
    for name in ("confusion", "fairness_acc", "embedding"):
        assert (tmp_path / f"{name}.png").stat().st_size > 2000


def test_closed_metrics_skip_unseen_classes(tmp_path):
    preds = synthetic_preds(np.repeat(np.arange(12), 5))
    preds["target"] = np.where(preds["subject"] < 6, preds["target"], -1)
    result = evaluate(preds, CLASSES, tmp_path, plots=False)
    seen = preds["subject"] < 6
    assert result["acc"] == pytest.approx(accuracy_score(preds["target"][seen], preds["log_probs"][seen].argmax(1)))
    with pytest.raises(ValueError, match="not the 'gender' label"):
        evaluate(preds, CLASSES, tmp_path, plots=False, target="gender")


def test_open_set(tmp_path):
    subjects = np.repeat(np.arange(12, 24), 6)  # unseen identities
    preds = synthetic_preds(subjects, closed=False)
    train = np.repeat(np.arange(12), 4)
    train_emb = synthetic_preds(np.r_[train, subjects])["embedding"][: len(train)]
    result = evaluate(preds, CLASSES, tmp_path, train_subjects=np.arange(12), n_trials=300, plots=True)
    assert "acc" not in result  # every target is -1: no closed-set metrics
    with (tmp_path / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    is_target = np.array([int(r["target"]) for r in rows], bool)
    scores = np.array([float(r["score"]) for r in rows])
    assert is_target.sum() == (~is_target).sum() == 150
    assert all((r["subject_i"] == r["subject_j"]) == bool(int(r["target"])) for r in rows)
    assert result["auc"] == pytest.approx(roc_auc_score(is_target, scores), abs=1e-4)  # CSV keeps 6 decimals
    assert {"eer", "min_dcf_0.01", "min_dcf_0.05", "tar@far=1e-2", "tar@far=1e-3", "fair/gender/eer/gap"} <= set(result)
    for name in ("roc_det", "scores", "fairness_eer", "embedding"):
        assert (tmp_path / f"{name}.png").stat().st_size > 2000
    normed = evaluate(
        preds, CLASSES, tmp_path / "asnorm", train_subjects=np.arange(12), cohort=class_means(train_emb, train),
        n_trials=300, plots=False,
    )  # fmt: skip
    assert normed["eer"] != result["eer"]  # the normalised scores are in use
    with pytest.raises(ValueError, match="unseen in training"):
        evaluate(preds, CLASSES, tmp_path, train_subjects=np.arange(14), plots=False)


def test_minimal_preds(tmp_path):
    """Only the required arrays: no attributes, presence flags or per-modality embeddings."""
    full = synthetic_preds(np.repeat(np.arange(12), 5))
    preds = {k: full[k] for k in ("log_probs", "target", "embedding", "subject")}
    result = evaluate(preds, {}, tmp_path, plots=False)
    assert set(result) == {"acc", "balanced_acc", "macro_f1", "subject_acc", "subject_balanced_acc", "subject_macro_f1"}


def test_cross_modal_matching_runs_only_on_samples_with_a_face_and_a_voice(tmp_path):
    preds = synthetic_preds(np.repeat(np.arange(12), 5))
    assert "match/v2f" in evaluate(preds, CLASSES, tmp_path / "both", plots=False)
    preds["face_present"][:] = False  # the test-time ablation of the face
    result = evaluate(preds, CLASSES, tmp_path / "no_face", plots=False)
    assert "acc" in result and not [k for k in result if k.startswith(("match/", "retrieval/"))]
