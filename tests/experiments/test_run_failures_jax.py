"""Issue 21 on the jax backend: a bad value is one line before any jax work, and a failure after the record
exists leaves it "failed" with the one-line reason (the torch runs: test_run_errors.py, test_run_failures.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments import run  # noqa: E402
from research import tracking  # noqa: E402
from tests.experiments.test_run_failures import args  # noqa: E402

# run.py in a fresh interpreter, saying whether jax was imported when it returned
NO_JAX = (
    "import sys; from experiments import run; code = run.main(sys.argv[1:]); print('jax' in sys.modules); "
    "sys.exit(code)"
)


@pytest.mark.parametrize("bad", ["--optim.lr=inf", "--data.batch_size=1000"])
def test_a_bad_value_is_one_line_before_any_jax_work(tmp_path, bad):
    command = [sys.executable, "-c", NO_JAX, *args(tmp_path / "runs", tmp_path / "data"), "--backend=jax", bad]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == "False\n"  # jax never imported
    assert not (tmp_path / "runs" / "r").exists()  # no run folder


def test_an_error_after_the_record_exists_leaves_the_jax_record_failed(tmp_path, monkeypatch):
    def fail(self, paths):  # the last step before `finish`: the end-of-run evaluation has run
        raise ValueError("1:2 matching needs a subject with two samples\nand at least two subjects")

    monkeypatch.setattr(tracking.Tracker, "images", fail)
    with pytest.raises(ValueError):  # not a user error: the traceback stays
        run.main([*args(tmp_path / "runs", tmp_path / "data"), "--backend=jax", "--optim.epochs=1"])
    found = json.loads((tmp_path / "runs" / "r" / "record.json").read_text())
    assert found["status"] == "failed" and len(found["history"]) == 1
    assert found["error"] == "ValueError: 1:2 matching needs a subject with two samples and at least two subjects"
