"""Cross-modal matching and retrieval on hand-built embeddings."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from research.metrics import crossmodal as X


def test_matching_perfect_when_each_subject_has_one_direction():
    subjects = np.repeat(np.arange(5), 3)
    onehot = np.eye(5)[subjects]  # face and voice of subject s both point along axis s
    assert X.matching_1to2(onehot, onehot, subjects, n=200, seed=0) == {"v2f": 1.0, "f2v": 1.0}


def test_matching_never_uses_the_anchor_sample():
    # Every sample has its own axis in both modalities: only the anchor itself would score higher,
    # so if positives and negatives are other samples, every task is a tie (0.5).
    subjects = np.repeat(np.arange(4), 3)
    own = np.eye(12)
    assert X.matching_1to2(own, own, subjects, n=300, seed=1) == {"v2f": 0.5, "f2v": 0.5}


def test_matching_directions_differ():
    # Faces: subject 0 -> (1, 0), subject 1 -> (0, 1). Voices: subject 0 -> (1, 0), subject 1 -> (1, 1).
    # f2v is always right; v2f ties (0.5) on subject-1 anchors: about 0.75 overall.
    subjects = np.repeat([0, 1], 4)
    face = np.array([[1.0, 0.0], [0.0, 1.0]])[subjects]
    voice = np.array([[1.0, 0.0], [1.0, 1.0]])[subjects]
    result = X.matching_1to2(face, voice, subjects, n=4000, seed=0)
    assert result["f2v"] == 1.0
    assert result["v2f"] == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="one space"):
        X.matching_1to2(face, np.ones((8, 3)), subjects)


def test_retrieval_hand_worked():
    gallery = np.eye(6)
    g_subjects = np.array([0, 1, 0, 2, 1, 2])
    query = np.array(
        [
            [0.1, 0.9, 0.5, 0.8, 0.2, 0.3],  # subject 0: ranks subjects 1 2 0 2 1 0 -> hits at 3 and 6, AP 1/3
            [0.0, 0.0, 0.0, 0.9, 0.0, 0.1],  # subject 2: hits at 1 and 2, AP 1
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # subject 3: nothing relevant, left out
        ]
    )
    result = X.retrieval(query, gallery, np.array([0, 2, 3]), g_subjects)
    assert result == pytest.approx({"recall@1": 0.5, "recall@5": 1.0, "map": (1 / 3 + 1) / 2})


def test_retrieval_map_matches_sklearn():
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(10, 4)), rng.normal(size=(30, 4))
    q_subjects, g_subjects = rng.integers(0, 5, 10), rng.integers(0, 5, 30)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    sim = unit(query) @ unit(gallery).T
    aps = [average_precision_score(g_subjects == s, row) for s, row in zip(q_subjects, sim, strict=True)]
    assert X.retrieval(query, gallery, q_subjects, g_subjects)["map"] == pytest.approx(np.mean(aps))
