"""NumPy helpers for the loss tests: references are written from the published formulas, in float64."""

import numpy as np
import pytest


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over rows of -log softmax(logits)[label]."""
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def _numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar NumPy function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


@pytest.fixture
def log_softmax():
    return _log_softmax


@pytest.fixture
def cross_entropy():
    return _cross_entropy


@pytest.fixture
def numeric_grad():
    return _numeric_grad
