"""Fairness breakdown and dataset report on hand-built examples."""

import numpy as np
import pytest

from research.metrics import fairness as F

NAMES = {"gender": ["f", "m"], "age": ["young", "mid", "old"]}
ATTRS = {"gender": np.array([0, 0, 0, 1, 1, 1]), "age": np.array([0, 0, 1, 0, 0, 0])}


def test_subgroups_include_crossings_and_drop_empty_cells():
    groups = F.subgroups(ATTRS, NAMES)
    assert list(groups) == ["gender", "age", "gender+age"]
    assert list(groups["age"]) == ["young", "mid"]  # "old" has no sample
    assert list(groups["gender+age"]) == ["f&young", "f&mid", "m&young"]
    np.testing.assert_array_equal(groups["gender+age"]["f&young"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(groups["gender"]["m"], [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="outside"):
        F.subgroups({"age": np.array([0, 3])}, NAMES)


def test_breakdown_and_bias():
    correct = np.array([1, 1, 0, 1, 0, 0], bool)  # f: 2/3 right, m: 1/3 right
    groups = F.subgroups(ATTRS, NAMES)
    table = F.breakdown(groups, lambda m: {"acc": correct[m].mean()}, min_size=2)
    flat = {(a, g, k): v for a, rows in table.items() for g, row in rows.items() for k, v in row.items()}
    assert flat == pytest.approx(
        {
            ("gender", "f", "n"): 3, ("gender", "f", "acc"): 2 / 3,
            ("gender", "m", "n"): 3, ("gender", "m", "acc"): 1 / 3,
            ("age", "young", "n"): 5, ("age", "young", "acc"): 3 / 5,  # "mid" (1 sample) is below min_size
            ("gender+age", "f&young", "n"): 2, ("gender+age", "f&young", "acc"): 1.0,
            ("gender+age", "m&young", "n"): 3, ("gender+age", "m&young", "acc"): 1 / 3,
        }
    )  # fmt: skip
    bias = F.bias(table)
    assert bias["gender"]["acc"] == pytest.approx({"gap": 1 / 3, "std": 1 / 6})
    assert bias["age"]["acc"] == pytest.approx({"gap": 0.0, "std": 0.0})
    assert bias["gender+age"]["acc"] == pytest.approx({"gap": 2 / 3, "std": 1 / 3})


def test_breakdown_leaves_out_undefined_groups():
    groups = F.subgroups(ATTRS, NAMES)
    table = F.breakdown(groups, lambda m: {"x": 1.0} if m[0] else {}, min_size=1)
    assert table["gender"] == {"f": {"n": 3, "x": 1.0}}


def test_dataset_report():
    present = {"face": np.array([1, 0, 1, 1, 1, 0], bool), "voice": np.ones(6, bool)}
    report = F.dataset_report(ATTRS, present, NAMES)
    assert report["n"] == 6
    assert report["missing"] == pytest.approx({"face": 2 / 6, "voice": 0.0})
    assert report["histograms"] == {"gender": {"f": 3, "m": 3}, "age": {"young": 5, "mid": 1, "old": 0}}
    crosstab = report["crosstabs"]["gender+age"]
    assert crosstab["rows"] == ["f", "m"] and crosstab["cols"] == ["young", "mid", "old"]
    assert crosstab["counts"] == [[2, 1, 0], [3, 0, 0]]
    assert crosstab["missing"]["face"] == [[0.5, 0.0, None], [1 / 3, None, None]]
    assert crosstab["missing"]["voice"] == [[0.0, 0.0, None], [0.0, None, None]]
    assert F.dataset_report(ATTRS, present)["histograms"]["age"] == {"0": 5, "1": 1}  # names from indices
