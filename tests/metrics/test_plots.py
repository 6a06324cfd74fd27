"""Every plot writes a non-empty PNG at the path it returns and a PDF beside it, under the one style."""

import numpy as np

from research import plots
from research.metrics import fairness

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, expected):
    assert path == expected
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000
    assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


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
        "gender+age": {"f&young": {"n": 5, "acc": 0.9}},
    }
    assert_png(plots.subgroup_bars(table, "acc", tmp_path / "bars.png"), tmp_path / "bars.png")


def test_attack_curves_name_the_y_axis(tmp_path):
    rows = [{"eps": e, "acc": 0.9 - e, "eer": 0.1 + e} for e in (0.0, 0.01, 0.03)]
    title = "pgd (10 steps, targeted) on face_voice-model.fusion=cross_attn-run.seed=0 (test)"
    path = plots.attack_curves(rows, title, (0.0, 1.0), tmp_path / "attack.png")
    assert_png(path, tmp_path / "attack.png")


def test_a_crossed_subgroup_of_the_65_plus_age_bin_reads_as_its_two_names():
    """The `65++g0` label: crossings joined their names with `+`, which the age bin `65+` holds too."""
    ages, groups = ["55-64", "65+"], ["g0", "g1"]
    groups = fairness.subgroups(
        {"age": np.array([1, 1, 0]), "group": np.array([0, 1, 0])}, {"age": ages, "group": groups}
    )
    assert list(groups["age+group"]) == ["55-64&g0", "65+&g0", "65+&g1"]


def test_every_plot_draws_under_the_one_style(tmp_path, monkeypatch):
    """The rc in force while a plot draws is STYLE (here read back from inside the figure's save)."""
    seen = {}

    def save(fig, path):
        import matplotlib

        seen.update({k: matplotlib.rcParams[k] for k in plots.STYLE})
        return path

    monkeypatch.setattr(plots, "save", save)
    plots.confusion(np.eye(2, dtype=int), ["a", "b"], tmp_path / "cm.png")
    assert seen == plots.STYLE
