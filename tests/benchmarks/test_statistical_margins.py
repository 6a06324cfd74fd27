"""benchmarks/torch/statistical_margins.py: every check names a test that exists and is marked statistical, the
margins and the verdict, and one cheap check run end to end through its subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.torch import statistical_margins as sm

ROOT = Path(__file__).resolve().parents[2]


def test_every_check_names_a_statistical_test_of_the_suite():
    for name, check in sm.checks().items():
        path, _, test = check.test.partition("::")
        source = (ROOT / path.split(" ")[0]).read_text()
        assert "pytest.mark.statistical" in source, f"{name}: {path} has no test marked statistical"
        assert f"def {test.split('[')[0].split('...')[0]}" in source, f"{name}: no test {test} in {path}"


def test_margin_and_verdict():
    assert sm.margin(">", 0.7, 0.75) == pytest.approx(0.05) and sm.margin("<", 0.45, 0.5) == pytest.approx(-0.05)
    check = sm.Check("t.py::x", lambda *a: {}, {"acc": (">", 0.7)})
    lines = sm.report("x", check, {"as in CI": {"acc": 0.9}, "seed +1": {"acc": 0.65}})
    assert lines[1].endswith("worst margin -0.05 CROSSES THE BAR"), lines


def test_one_check_runs_in_a_fresh_process(tmp_path):
    out = subprocess.run(
        [sys.executable, "benchmarks/torch/statistical_margins.py", "--checks", "synergy_late_mean", "--variations",
         "as in CI", "--data-root", str(tmp_path), "--json", str(tmp_path / "m.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "acc < 0.45: as in CI" in out.stdout and out.stdout.rstrip().endswith("ok"), out.stdout


def test_markdown_table_takes_the_worst_variation():
    results = {"match": {"as in CI": {"subject_mean": 0.77, "loss_drop": 1.2}, "seed +1": {"subject_mean": 0.75}}}
    rows = sm.markdown(results)
    assert f"| match | subject_mean | > {sm.checks()['match'].bars['subject_mean'][1]:g} | 0.75 - 0.77 |" in rows[2]
    assert rows[2].endswith("| as in CI, seed +1 |") and rows[3].startswith("| match | loss_drop | > 0 | 1.2 - 1.2 |")
