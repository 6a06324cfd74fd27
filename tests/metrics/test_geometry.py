"""Embedding / class-centre angles against scipy's cosine distance, a per-pair loop and hand-worked geometry."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from research.metrics.geometry import min_centre_angle, nearest_centre_angles, target_angles


def test_target_angles_match_scipy_cosine_distance_at_any_norm():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(7, 5)) * rng.uniform(0.1, 30.0, size=(7, 1))
    embeddings = rng.normal(size=(40, 5)) * rng.uniform(0.01, 100.0, size=(40, 1))
    labels = rng.integers(7, size=40)
    reference = np.arccos(1.0 - cdist(embeddings, centres, "cosine")[np.arange(40), labels])
    np.testing.assert_allclose(target_angles(embeddings, labels, centres), reference, atol=1e-7)


def test_target_angles_hand_worked():
    centres = np.array([[1.0, 0.0], [0.0, 2.0]])
    embeddings = np.array([[3.0, 0.0], [0.0, -1.0], [1.0, 1.0], [-5.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_allclose(target_angles(embeddings, labels, centres), [0.0, math.pi, math.pi / 4, math.pi])


def test_target_angles_reject_an_unknown_label():
    with pytest.raises(ValueError, match="class indices"):
        target_angles(np.ones((2, 3)), np.array([0, -1]), np.ones((2, 3)))


def test_min_centre_angle_matches_a_loop_over_pairs():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 4)) * rng.uniform(0.1, 10.0, size=(12, 1))
    angles = [
        math.acos(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        for i, a in enumerate(centres)
        for b in centres[i + 1 :]
    ]
    assert min_centre_angle(centres) == pytest.approx(min(angles), abs=1e-9)
    assert min_centre_angle(centres) == pytest.approx(np.arccos(1.0 - pdist(centres, "cosine")).min(), abs=1e-7)


def test_min_centre_angle_hand_worked():
    simplex = np.array([[math.cos(a), math.sin(a)] for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)])
    assert min_centre_angle(5.0 * simplex) == pytest.approx(2 * math.pi / 3)
    assert min_centre_angle(np.eye(4) * [1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.pi / 2)
    assert min_centre_angle(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(math.pi)
    assert min_centre_angle(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])) == pytest.approx(0.0, abs=1e-7)


def test_nearest_centre_angles_match_scipy_row_minima():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(9, 6)) * rng.uniform(0.1, 10.0, size=(9, 1))
    angles = np.arccos(1.0 - cdist(centres, centres, "cosine"))
    np.fill_diagonal(angles, np.inf)
    np.testing.assert_allclose(nearest_centre_angles(centres), angles.min(axis=1), atol=1e-7)


def test_nearest_centre_angles_hand_worked():
    # 0 and 30 degrees are each other's nearest; 120 degrees is 90 from 30 and 120 from 0.
    centres = np.array([[math.cos(a), math.sin(a)] for a in np.radians([0.0, 30.0, 120.0])]) * [[1.0], [3.0], [0.5]]
    np.testing.assert_allclose(nearest_centre_angles(centres), np.radians([30.0, 30.0, 90.0]), atol=1e-12)


def test_centre_angles_need_two_centres():
    for angles in (min_centre_angle, nearest_centre_angles):
        with pytest.raises(ValueError, match="at least 2"):
            angles(np.ones((1, 3)))
