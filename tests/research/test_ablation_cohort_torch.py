"""The test-time modality ablation with AS-norm: the cohort is embedded without the removed modality, as
the test samples are (a cohort embedded with every modality would normalise against the wrong scores)."""

import csv

import numpy as np
import torch

from research.data.loader import load
from research.report import modality_ablation, training_cohort
from research.torch import backend
from research.torch.model import build_model
from research.torch.predict import predict


def as_norm_reference(emb, i, j, cohort, k):
    """AS-norm1 from its definition: scores standardised by the top-k cohort cosines of each side."""
    emb = np.asarray(emb, np.float64)  # float64 as the code: a small sd amplifies float32 rounding
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cohort = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    raw = np.sum(unit[i] * unit[j], axis=1)
    top = -np.sort(-(unit @ cohort.T), axis=1)[:, :k]
    mu, sd = top.mean(axis=1), top.std(axis=1)
    return 0.5 * ((raw - mu[i]) / sd[i] + (raw - mu[j]) / sd[j])


def subject_means(emb, subjects):
    emb = np.asarray(emb, np.float64)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return np.stack([unit[subjects == s].mean(axis=0) for s in np.unique(subjects)])


def test_ablation_normalises_with_a_cohort_embedded_without_the_removed_modality(tiny, tmp_path):
    cfg = tiny("--data.split=open", "--eval.as_norm=true", "--eval.as_norm_top_k=3", "--modalities=face,text")
    splits = load(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None)
    device = torch.device("cpu")
    protocol = dict(
        train_subjects=np.unique(splits.train.labels("subject")),
        cohort=training_cohort(backend, model, splits.train, cfg, device),  # all modalities, as final_report builds it
        seed=0,
        target="identity",
        n_trials=200,
        top_k=3,
    )
    modality_ablation(backend, model, splits, cfg, device, tmp_path, protocol)
    for m in ("face", "text"):
        with open(tmp_path / f"test_without_{m}" / "trials.csv") as f:
            rows = list(csv.DictReader(f))
        i, j = (np.array([int(r[c]) for r in rows]) for c in ("i", "j"))
        scores = np.array([float(r["score"]) for r in rows])
        test, train = (predict(model, data, cfg, device, drop=m) for data in (splits.test, splits.train))
        dropped = subject_means(train["embedding"], train["subject"])
        expected = as_norm_reference(test["embedding"], i, j, dropped, 3)
        np.testing.assert_allclose(scores, expected, atol=2e-6)
        # The full-modality cohort gives other scores, so the comparison above can tell the two apart.
        full = as_norm_reference(test["embedding"], i, j, protocol["cohort"][0], 3)
        assert np.abs(full - expected).max() > 1e-3
