"""Predictions.arrays: a class's speed copies (data.speed_perturb_labels) fold into the class."""

import numpy as np

from research.predictions import Predictions


def test_speed_copies_fold_into_their_class_by_summed_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3 * 4))  # N = 5 samples, C = 4 classes, 3 copies each (c + k C)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    predictions = Predictions()
    predictions.add({"target": np.arange(5) % 4}, 1.0, {"log_probs": log_probs})
    folded = predictions.arrays(copies=3)["log_probs"]
    p = np.exp(log_probs)
    want = np.log(np.stack([p[:, c] + p[:, c + 4] + p[:, c + 8] for c in range(4)], axis=1))
    np.testing.assert_allclose(folded, want, rtol=1e-12)
    np.testing.assert_allclose(np.exp(folded).sum(1), 1.0, rtol=1e-12)
    assert predictions.arrays()["log_probs"].shape == (5, 12)  # one copy: unchanged
