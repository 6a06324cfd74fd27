"""The framework-free parts of the adversarial study (research/{torch,jax}/attack.py, experiments/attack.py):
valid input ranges, the targets of targeted attacks, and the budget actually spent per sample."""

from __future__ import annotations

import numpy as np

RANGES = {"face": (0.0, 1.0), "voice": (-1.0, 1.0)}  # pixels; waveform samples
ATTACKS = ("fgsm", "pgd")


def target_classes(labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """A wrong class per sample (N,), uniform over the other classes, fixed by the seed."""
    shift = np.random.default_rng([seed, 7]).integers(1, classes, size=len(labels))
    return (labels + shift) % classes


def impostors(subjects: np.ndarray, seed: int) -> np.ndarray:
    """For each sample, the index of a random sample of another subject (N,), fixed by the seed: whose
    embedding a targeted attack on a verification split moves towards."""
    rng = np.random.default_rng([seed, 8])
    found = np.empty(len(subjects), np.int64)
    for i, s in enumerate(subjects):
        others = np.flatnonzero(subjects != s)
        found[i] = others[rng.integers(len(others))]
    return found


def budget(clean: np.ndarray, adversarial: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample (N,): the L-inf norm of the perturbation and its SNR in dB, 10 log10(sum x^2 / sum delta^2)
    over the sample's values (inf where nothing changed)."""
    delta = (adversarial.astype(np.float64) - clean.astype(np.float64)).reshape(len(clean), -1)  # (N, D)
    signal = (clean.astype(np.float64).reshape(len(clean), -1) ** 2).sum(1)  # (N,)
    noise = (delta**2).sum(1)  # (N,)
    with np.errstate(divide="ignore"):
        snr = np.where(noise > 0, 10 * np.log10(signal / np.where(noise > 0, noise, 1.0)), np.inf)
    return {"linf": np.abs(delta).max(1), "snr_db": snr}
