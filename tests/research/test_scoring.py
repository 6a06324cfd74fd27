"""research/scoring.py against independent references: trial and score file parsing (the real VoxCeleb1-O list),
cosine / mean subtraction / AS-norm / S-norm against per-trial NumPy loops written as WeSpeaker does, Cllr
against its published formula, min Cllr against scikit-learn's isotonic regression, the calibration fit
against scikit-learn's logistic regression, and calibration on scores whose true llr is known."""

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from research import scoring
from research.metrics import verification

VOX1_O = Path("/work/shared/data/voxceleb1/veri_test2.txt")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_reads_the_voxceleb1_o_list():
    trials = scoring.read_trials(VOX1_O)
    raw = [line.split() for line in VOX1_O.read_bytes().decode().split("\r\n")]
    assert len(trials.enroll) == len(raw) == 37611
    assert trials.labels.sum() == 18802 == sum(r[0] == "1" for r in raw)
    assert trials.enroll[-1] == raw[-1][1] and trials.test[-1] == raw[-1][2]
    assert trials.lines[:3] == [1, 2, 3]
    assert len(set(trials.enroll) | set(trials.test)) == 4708


def test_reads_kaldi_forms_and_refuses_bad_lines(tmp_path):
    kaldi = scoring.read_trials(write(tmp_path / "k", "a b target\n\nc d nontarget\n"))
    assert kaldi.enroll == ["a", "c"] and kaldi.test == ["b", "d"] and kaldi.lines == [1, 3]
    assert kaldi.labels.tolist() == [True, False]
    assert scoring.read_trials(write(tmp_path / "u", "a b\nc d\n")).labels is None
    with pytest.raises(scoring.ScoringError, match=r"line 2: a trial list must label every trial or none"):
        scoring.read_trials(write(tmp_path / "m", "a b target\nc d\n"))
    with pytest.raises(scoring.ScoringError, match=r"line 1: expected"):
        scoring.read_trials(write(tmp_path / "x", "a b c d\n"))


def test_missing_key_is_an_error_or_a_counted_skip(tmp_path):
    trials = scoring.read_trials(write(tmp_path / "t", "1 a b\n0 a zz\n1 b a\n"))
    emb = {"a": np.ones(3), "b": np.arange(3.0)}
    with pytest.raises(scoring.ScoringError, match=r"line 2: key 'zz' is not in the embeddings file"):
        scoring.index_trials(trials, emb)
    keep, names, i, j = scoring.index_trials(trials, emb, on_missing="skip")
    assert keep.tolist() == [True, False, True] and names == ["a", "b"]
    assert i.tolist() == [0, 1] and j.tolist() == [1, 0]


def test_read_embeddings_refuses_mixed_shapes(tmp_path):
    save_file({"a": np.ones(4, np.float32), "b": np.ones(5, np.float32)}, str(tmp_path / "e.safetensors"))
    with pytest.raises(scoring.ScoringError, match="'b' has shape"):
        scoring.read_embeddings(tmp_path / "e.safetensors")


def synthetic(n_keys=30, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    keys = [f"spk{k % 6}/utt{k}.wav" for k in range(n_keys)]
    centres = rng.normal(size=(6, dim))
    emb = {key: centres[k % 6] + rng.normal(size=dim) for k, key in enumerate(keys)}
    pairs = rng.integers(0, n_keys, (200, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    labels = (pairs[:, 0] % 6) == (pairs[:, 1] % 6)
    trials = scoring.Trials(
        "t", [keys[a] for a in pairs[:, 0]], [keys[b] for b in pairs[:, 1]], [1] * len(pairs), labels
    )
    return emb, trials, rng.normal(size=(40, dim)) + 0.3


def wespeaker_stats(x: np.ndarray, cohort: np.ndarray, top_n: int) -> tuple[float, float]:
    """WeSpeaker's get_mean_std for one embedding: sort the cohort cosines descending, keep top_n, mean, np.std."""
    cos = sorted((float(x @ c / np.linalg.norm(x) / np.linalg.norm(c)) for c in cohort), reverse=True)[:top_n]
    return float(np.mean(cos)), float(np.std(cos))


@pytest.mark.parametrize("norm, top_k", [(None, 0), ("as-norm", 7), ("s-norm", 7)])
def test_scores_match_a_per_trial_loop(norm, top_k):
    emb, trials, cohort = synthetic()
    mean = np.mean(list(emb.values()), axis=0) + 0.2
    scores, keep = scoring.score_trials(
        emb, trials, mean=mean, cohort=None if norm is None else cohort, norm=norm or "as-norm", top_k=top_k
    )
    assert keep.all()
    for n, (e, t) in enumerate(zip(trials.enroll, trials.test, strict=True)):
        x, y = emb[e] - mean, emb[t] - mean
        expected = x @ y / np.linalg.norm(x) / np.linalg.norm(y)
        if norm is not None:
            k = top_k if norm == "as-norm" else len(cohort)
            (mx, sx), (my, sy) = wespeaker_stats(x, cohort - mean, k), wespeaker_stats(y, cohort - mean, k)
            expected = 0.5 * ((expected - mx) / sx + (expected - my) / sy)
        assert scores[n] == pytest.approx(expected, abs=1e-10)


def test_as_norm_equals_the_training_report():
    """verification.verify (the end-of-run report's open-set protocol) on the same trials and cohort."""
    emb, trials, cohort = synthetic()
    keys = list(emb)
    matrix = np.stack([emb[k] for k in keys])
    i = np.array([keys.index(k) for k in trials.enroll])
    j = np.array([keys.index(k) for k in trials.test])
    subjects, train = np.arange(len(keys)) % 6, np.arange(100, 140)
    found, listed = verification.verify(
        matrix, subjects, train, cohort=(cohort, train), top_k=20, trials=(i, j, trials.labels)
    )
    scores, _ = scoring.score_trials(emb, trials, cohort=cohort, top_k=20)
    np.testing.assert_allclose(scores, listed["score"], atol=1e-12)
    assert verification.eer(scores, trials.labels)[0] == found["eer"]


def test_cllr_is_the_published_formula():
    rng = np.random.default_rng(1)
    llr, labels = rng.normal(0, 3, 500), rng.random(500) < 0.3
    expected = 0.5 * (np.mean(np.log2(1 + np.exp(-llr[labels]))) + np.mean(np.log2(1 + np.exp(llr[~labels]))))
    assert scoring.cllr(llr, labels) == pytest.approx(expected, rel=1e-12)
    assert scoring.cllr(np.zeros(4), np.array([1, 0, 1, 0], bool)) == pytest.approx(1.0)


@pytest.mark.parametrize("ties", [False, True])
def test_min_cllr_is_cllr_of_the_isotonic_fit(ties):
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.4
    scores = rng.normal(labels * 1.5, 1.0)
    scores = np.round(scores, 1) if ties else scores
    p = IsotonicRegression(increasing=True).fit(scores, labels.astype(float)).predict(scores)
    with np.errstate(divide="ignore"):
        llr = np.log(p / (1 - p)) - np.log(labels.sum() / (~labels).sum())
    tar, non = llr[labels], llr[~labels]
    expected = 0.5 * (np.mean(np.log2(1 + np.exp(-tar))) + np.mean(np.log2(1 + np.exp(non))))
    assert scoring.min_cllr(scores, labels) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(scoring.pav_llr(scores, labels), llr, rtol=1e-10)
    assert scoring.min_cllr(scores, labels) <= scoring.cllr(scores, labels)


def test_min_cllr_of_separated_scores_is_zero():
    assert scoring.min_cllr(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 0.0


@pytest.mark.parametrize("prior", [0.5, 0.1])
def test_calibration_fit_equals_weighted_logistic_regression(prior):
    rng = np.random.default_rng(3)
    labels = rng.random(600) < 0.25
    scores = rng.normal(np.where(labels, 0.6, 0.1), 0.15)
    a, b = scoring.fit_calibration(scores, labels, prior=prior)
    weight = np.where(labels, prior / labels.sum(), (1 - prior) / (~labels).sum()) * len(labels)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000)
    reference.fit(scores[:, None], labels, sample_weight=weight)
    assert a == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert b + math.log(prior / (1 - prior)) == pytest.approx(reference.intercept_[0], rel=1e-4, abs=1e-4)


def test_calibration_recovers_a_known_llr_and_helps_held_out_trials():
    """Gaussian scores N(mu_t, sd), N(mu_n, sd): the true llr is a s + b, a = (mu_t - mu_n) / sd^2,
    b = -(mu_t^2 - mu_n^2) / (2 sd^2)."""
    rng = np.random.default_rng(4)
    mu_t, mu_n, sd = 0.7, 0.2, 0.2

    def draw(n):
        labels = rng.random(n) < 0.3
        return rng.normal(np.where(labels, mu_t, mu_n), sd), labels

    dev, dev_labels = draw(20000)
    held, held_labels = draw(5000)
    a, b = scoring.fit_calibration(dev, dev_labels)
    true_a, true_b = (mu_t - mu_n) / sd**2, -(mu_t**2 - mu_n**2) / (2 * sd**2)
    assert a == pytest.approx(true_a, rel=0.05) and b == pytest.approx(true_b, abs=0.1 * abs(true_b))
    llr = a * held + b
    assert scoring.cllr(llr, held_labels) < scoring.cllr(held, held_labels)
    assert scoring.cllr(llr, held_labels) <= scoring.cllr(true_a * held + true_b, held_labels) + 0.01
    assert scoring.min_cllr(llr, held_labels) == pytest.approx(scoring.min_cllr(held, held_labels), abs=1e-12)


def test_read_scores_names_bad_lines(tmp_path):
    scores, labels = scoring.read_scores(write(tmp_path / "s", "a b 0.5 target\nc d -1 nontarget\n"))
    assert scores.tolist() == [0.5, -1.0] and labels.tolist() == [True, False]
    with pytest.raises(scoring.ScoringError, match="line 2"):
        scoring.read_scores(write(tmp_path / "s2", "a b 0.5 target\nc d x nontarget\n"))
