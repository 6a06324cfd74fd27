"""Contrastive.in_batch (every pair i < j of a batch) in both twins against a plain NumPy double loop."""

import jax.numpy as jnp
import numpy as np
import torch

from losses.jax.contrastive import Contrastive
from losses.torch.contrastive import Contrastive as TorchContrastive


def reference(x: np.ndarray, labels: np.ndarray, keep: np.ndarray, margin: float) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if keep[i] and keep[j]:
                d = np.linalg.norm(x[i] - x[j])
                terms.append(d**2 if labels[i] == labels[j] else max(0.0, margin - d) ** 2)
    return float(np.mean(terms) / 2)


def test_in_batch_loss_equals_the_mean_over_every_kept_pair():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    keep = np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
    expected = reference(x, labels, keep, 1.2)
    got_torch = TorchContrastive(margin=1.2).in_batch(
        torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(keep)
    )
    got_jax = Contrastive(margin=1.2).in_batch(jnp.asarray(x), jnp.asarray(labels), jnp.asarray(keep))
    assert got_torch[1].shape == got_jax[1].shape == (28,)
    np.testing.assert_allclose(float(got_torch[0]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(got_jax[0]), expected, rtol=1e-5)
