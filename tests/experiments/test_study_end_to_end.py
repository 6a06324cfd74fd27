"""The one end-to-end test: a tiny modality study through the real run.py, exactly as `wandb agent` would
call it (comma string, bool and float values in `--key=value` form), then its table from the records."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from experiments import ablate

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data.synthetic.identities": 8,
    "data.synthetic.samples_per_identity": 6,
    "data.voice_seconds": 0.5,
    "data.batch_size": 8,
    "model.dim": 32,
    "model.layers": 1,
    "model.fusion_layers": 1,
    "optim.epochs": 1,
    "optim.lr": 0.003,
    "eval.trials": 200,
    "eval.plots": False,
}


@pytest.mark.slow
def test_a_tiny_modality_study_runs_through_run_py_and_makes_its_table(tmp_path):
    parameters = {k: {"value": v} for k, v in TINY.items()} | {
        "model.modalities": {"values": ["face", "face,text"]},
        "run.seed": {"values": [0, 1]},
        "model.fusion": {"value": "late"},
        "run.group": {"value": "tiny"},
        "run.tags": {"value": "study-tiny,test"},
        "data.root": {"value": str(tmp_path / "datasets")},
    }
    sweep = {"name": "tiny", "program": "experiments/run.py", "method": "grid", "parameters": parameters}
    sweep["metric"] = {"name": "val/acc", "goal": "maximize"}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    command = [sys.executable, "experiments/sweep.py", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "runs")]
    done = subprocess.run(
        [*command, "--workers", "2", "--wandb", "disabled"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "runs" / "tiny"
    records = {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/record.json")}
    assert len(records) == 4 and all(r["status"] == "finished" for r in records.values())
    for r in records.values():  # the agent's string forms reached the config, parsed
        assert r["config"]["model"]["modalities"] in (["face"], ["face", "text"])
        assert r["config"]["eval"]["plots"] is False and r["config"]["optim"]["lr"] == 0.003
        assert r["config"]["run"]["group"] == "tiny" and r["config"]["run"]["tags"] == ["study-tiny", "test"]
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'study.db'}").get_trials()
    assert sorted(t.value for t in trials) == sorted(r["summary"]["val/acc"] for r in records.values())

    args = ["--runs", str(folder), "--by", "model.modalities", "--baseline", "model.modalities=face"]
    assert ablate.main([*args, "--metrics", "test/acc,test/macro_f1"]) == 0
    rows = {r["model.modalities"]: r for r in csv.DictReader((folder / "tables" / "tiny.csv").open())}
    for mods, row in rows.items():
        for metric in ("test/acc", "test/macro_f1"):
            values = [
                r["summary"][metric] for r in records.values() if "+".join(r["config"]["model"]["modalities"]) == mods
            ]
            assert float(row[f"{metric} mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(row[f"{metric} std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert sorted(rows) == ["face", "face+text"] and rows["face+text"]["seeds_finished"] == "2"
