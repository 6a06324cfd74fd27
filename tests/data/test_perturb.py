"""The fixed random perturbations of data.perturb (research/data/perturb.py), read back from the training
batches of the tiny dataset: within the eps-ball and the valid range, the same for a sample in every epoch
and every run with the same seed, different between samples and seeds, absent outside training."""

import numpy as np
import pytest

from research.config import PerturbConfig
from research.data import loader

FACE_EPS, VOICE_EPS = 0.05, 0.02


@pytest.fixture(scope="module")
def data(tiny_source, data_config):
    """The tiny dataset, voices cropped to 2 s: longer than any of its voices, so every crop starts at 0."""
    cfg = data_config(tiny_source / "manifest.csv", voice_seconds=2.0)
    cfg.perturb = PerturbConfig(copies=1, face_eps=FACE_EPS, voice_eps=VOICE_EPS)
    return loader.load(cfg).train


def deltas(train, *, seed=0, epoch=0, copies=1, is_train=True) -> tuple[np.ndarray, np.ndarray]:
    """(face delta (N, 3, H, W), voice delta (N, S)) of one epoch, samples in index order."""
    train.perturb = PerturbConfig(copies=copies, face_eps=FACE_EPS, voice_eps=VOICE_EPS)
    with train.batches(7, shuffle=False, seed=seed, epoch=epoch, train=is_train) as it:
        batches = list(it)
    face = np.concatenate([b["face"] for b in batches])
    voice = np.concatenate([b["voice"] for b in batches])
    assert face.min() >= 0 and face.max() <= 1 and np.abs(voice).max() <= 1  # the valid ranges
    clean_voice = np.zeros_like(voice)
    for i, wave in enumerate(train.voice):
        clean_voice[i, : len(wave[: voice.shape[1]])] = wave[: voice.shape[1]]
    return face - train.face.astype(np.float32) / 255, voice - clean_voice


def test_within_the_ball_and_spread_over_it(data):
    face, voice = deltas(data)
    # Where clipping did not act (clean pixel away from 0 and 1), the delta is the drawn uniform value.
    inside = (data.face > 20) & (data.face < 235)
    assert np.abs(face).max() <= FACE_EPS + 1e-6 and np.abs(voice).max() <= VOICE_EPS + 1e-6
    assert np.abs(face[inside]).max() > 0.95 * FACE_EPS and abs(face[inside].mean()) < 0.05 * FACE_EPS
    assert np.abs(face[inside]).mean() == pytest.approx(FACE_EPS / 2, rel=0.05)  # E|U(-e, e)| = e / 2


def test_fixed_across_epochs_and_runs_different_between_samples(data, tiny_source, data_config):
    face0, voice0 = deltas(data, epoch=0)
    face3, voice3 = deltas(data, epoch=3)
    np.testing.assert_allclose(face3, face0, atol=1e-6)  # one copy: the same perturbation every epoch
    np.testing.assert_allclose(voice3, voice0, atol=1e-7)
    again = loader.load(data_config(tiny_source / "manifest.csv", voice_seconds=2.0)).train  # another run
    face_again, voice_again = deltas(again, epoch=5)
    np.testing.assert_allclose(face_again, face0, atol=1e-6)
    np.testing.assert_allclose(voice_again, voice0, atol=1e-7)
    assert not np.allclose(face0[0], face0[1]) and not np.allclose(voice0[0], voice0[1])  # per sample
    other_seed, _ = deltas(data, seed=1)
    assert not np.allclose(other_seed, face0)


def test_each_epoch_shows_one_of_the_fixed_copies(data):
    """With 3 copies, 12 epochs show each sample at most 3 distinct perturbations, and more than one."""
    seen = np.stack([deltas(data, epoch=e, copies=3)[0] for e in range(12)])  # (12, N, 3, H, W)
    for i in range(seen.shape[1]):
        distinct = {np.round(seen[e, i], 5).tobytes() for e in range(len(seen))}
        assert 1 <= len(distinct) <= 3
    assert max(len({np.round(seen[e, i], 5).tobytes() for e in range(12)}) for i in range(seen.shape[1])) == 3


def test_evaluation_batches_are_clean(data):
    face, voice = deltas(data, is_train=False)
    assert np.abs(face).max() < 1e-6 and np.abs(voice).max() == 0
