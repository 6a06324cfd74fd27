"""Every plot writes a non-empty PNG at the path it returns."""

import numpy as np

from research import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, expected):
    assert path == expected
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_training_curves(tmp_path):
    history = [
        {"epoch": e, "train/loss": 1 / e, "val/loss": 1.2 / e, "val/acc": 0.1 * e, "lr": 1e-3} for e in (1, 2, 3)
    ]
    assert_png(plots.training_curves(history, tmp_path / "curves.png"), tmp_path / "curves.png")


def test_confusion(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 6]])
    assert_png(plots.confusion(matrix, ["a", "b", "c"], tmp_path / "cm.png"), tmp_path / "cm.png")


def test_roc_det_and_histograms(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = rng.normal(size=100) + 2 * labels
    assert_png(plots.roc_det(scores, labels, tmp_path / "roc.png"), tmp_path / "roc.png")
    assert_png(plots.score_histograms(scores, labels, tmp_path / "h" / "s.png"), tmp_path / "h" / "s.png")


def test_embedding_map(tmp_path):
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(6), 8)
    emb = rng.normal(size=(6, 8))[subjects] + 0.1 * rng.normal(size=(48, 8))
    colour_by = {"subject": subjects, "gender": subjects % 2}
    path = plots.embedding_map(emb, colour_by, tmp_path / "map.png", names={"gender": ["f", "m"]}, max_points=40)
    assert_png(path, tmp_path / "map.png")


def test_subgroup_bars(tmp_path):
    table = {
        "gender": {"f": {"n": 10, "acc": 0.8}, "m": {"n": 12, "acc": 0.6}},
        "gender+age": {"f+young": {"n": 5, "acc": 0.9}},
    }
    assert_png(plots.subgroup_bars(table, "acc", tmp_path / "bars.png"), tmp_path / "bars.png")
