"""experiments/evaluate.py prints the headline metrics, a bounded handful of lines; every fairness subgroup
stays in the files it writes."""

import json

import numpy as np

from experiments import evaluate
from research.evaluation import evaluate as evaluate_split
from tests.metrics.test_evaluation import CLASSES, synthetic_preds


def fake_checkpoint(run_dir, out, device):
    """What research.report.evaluate_checkpoint returns and writes, from synthetic predictions: val and test
    through the real evaluation (every fairness subgroup), a test-time ablation, summary.json."""
    summary = {}
    for n, split in enumerate(("val", "test")):
        preds = synthetic_preds(np.repeat(np.arange(12), 5), seed=n)
        metrics = evaluate_split(preds, CLASSES, out / split, target="identity", seed=0, plots=False)
        summary |= {f"{split}/{k}": v for k, v in metrics.items()}
    summary |= {"test/without_face/acc": 0.5, "test/without_voice/acc": 0.6, "flops_per_sample": 1e6}
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def test_evaluate_prints_the_headline_and_leaves_every_subgroup_in_the_files(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text("{}")
    (run / "best.safetensors").write_bytes(b"")
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", fake_checkpoint)
    assert evaluate.main(["--run", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads((run / "reeval" / "summary.json").read_text())
    fair = [k for k in summary if "/fair/" in k]
    assert len(fair) > 150 and len(lines) <= 20  # was one line per figure
    assert not any("/fair/" in line for line in lines)
    assert lines[0].split() == ["val/acc", f"{summary['val/acc']:.4f}"]
    assert [line.split()[0] for line in lines if "without" in line] == [
        "test/without_face/acc",
        "test/without_voice/acc",
    ]
    assert lines[-1].split()[0] == str(len(summary) - len(lines) + 1)
    test = json.loads((run / "reeval" / "test" / "metrics.json").read_text())["metrics"]
    assert {k.removeprefix("test/") for k in fair if k.startswith("test/")} == {k for k in test if "fair/" in k}
