"""A shipped study file end to end at a tiny budget: its own command line (the `--config` preset first), run
by experiments/sweep.py as `wandb agent` would run it, then its table from the record."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments import ablate

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data.synthetic.identities": 8,
    "data.synthetic.samples_per_identity": 6,
    "data.image_size": 16,
    "data.batch_size": 8,
    "model.dim": 16,
    "optim.epochs": 1,
    "eval.trials": 200,
}


@pytest.mark.slow
def test_the_feature_fusion_file_trains_with_its_preset_and_makes_its_table(tmp_path):
    sweep = yaml.safe_load((ROOT / "experiments" / "sweeps" / "face_voice_features.yaml").read_text())
    sweep["parameters"] |= {"run.seed": {"values": [0]}, "model.combine_features": {"values": ["add"]}}
    sweep["parameters"] |= {k: {"value": v} for k, v in TINY.items()}
    sweep["parameters"]["data.root"] = {"value": str(tmp_path / "datasets")}
    path = tmp_path / "face_voice_features.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    command = [
        sys.executable,
        "experiments/sweep.py",
        str(path),
        "--out",
        str(tmp_path / "runs"),
        "--wandb",
        "disabled",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "runs" / "face_voice"
    (record,) = [json.loads(p.read_text()) for p in folder.glob("*/record.json")]
    assert record["status"] == "finished"
    config = record["config"]
    assert config["data"]["synthetic"]["noise"] == 0.5  # set by the face_voice preset only, not by the file
    assert config["model"]["modalities"] == ["face", "voice"] and config["model"]["fusion"] == "concat"
    assert config["model"]["combine_features"] == "add" and config["run"]["group"] == "face_voice"

    by = ["--by", "model.fusion,model.combine_features", "--params", "--metrics", "test/acc"]
    assert ablate.main(["--runs", str(folder), *by, "--sweeps", str(path)]) == 0
    (row,) = csv.DictReader((folder / "tables" / "face_voice.csv").open())
    assert (row["model.fusion"], row["model.combine_features"], row["seeds_finished"]) == ("concat", "add", "1")
    assert float(row["test/acc mean"]) == record["summary"]["test/acc"]
    assert float(row["params"]) == record["summary"]["params"]
