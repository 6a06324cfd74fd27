"""experiments/ensemble.py on two tiny runs trained separately (a face model and a voice model): its scores
against a NumPy computation from each run's own predictions, and the learned weights fitted on val only."""

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import ablate
from research.config import Config
from research.config_parse import from_dict
from research.data.loader import load

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--run.wandb=disabled",
    "--run.progress=false",
    "--data.synthetic.identities=8",
    "--data.synthetic.samples_per_identity=6",
    "--data.image_size=16",
    "--data.voice_seconds=0.5",
    "--data.batch_size=8",
    "--model.dim=16",
    "--model.layers=1",
    "--model.fusion_layers=1",
    "--optim.epochs=1",
    "--eval.plots=false",
    "--eval.trials=200",
    "--fusion=early",
]


def program(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """A face-only and a voice-only run on the same tiny dataset."""
    out = tmp_path_factory.mktemp("runs")
    run = program("run")
    common = [*TINY, f"--run.out={out}", f"--data.root={tmp_path_factory.mktemp('data')}"]
    for modality in ("face", "voice"):
        assert run.main([*common, f"--modalities={modality}", f"--run.name={modality}"]) == 0
    return [out / "face", out / "voice"]


@pytest.fixture(scope="module")
def members(runs) -> list[dict[str, dict]]:
    """Each run's val and test predictions, from its own model (torch predict, not the ensemble code)."""
    from research.torch import checkpoint
    from research.torch.model import build_model
    from research.torch.predict import pick_device, predict

    found = []
    for run_dir in runs:
        cfg: Config = from_dict(json.loads((run_dir / "record.json").read_text())["config"])
        splits = load(cfg.data)
        model = build_model(cfg, len(splits.classes["identity"]), splits.vocab_size, None)
        checkpoint.load(run_dir / "best.safetensors", model)
        found.append({s: predict(model, getattr(splits, s), cfg, pick_device("cpu")) for s in ("val", "test")})
    return found


def ensemble(runs, out: Path, combine: str) -> dict:
    assert program("ensemble").main(["--runs", *map(str, runs), "--combine", combine, "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_scores_are_the_combined_probabilities(runs, members, tmp_path, combine):
    summary = ensemble(runs, tmp_path, combine)
    probs = np.stack([np.exp(m["test"]["log_probs"].astype(np.float64)) for m in members])  # (R, N, C)
    expected = probs.mean(0) if combine == "mean" else probs.prod(0) / probs.prod(0).sum(-1, keepdims=True)
    scores = np.load(tmp_path / "test" / "scores.npz")
    np.testing.assert_allclose(np.exp(scores["log_probs"]), expected, rtol=1e-4, atol=1e-6)
    target = members[0]["test"]["target"]
    assert summary["test/acc"] == pytest.approx(float((expected.argmax(-1) == target).mean()))
    for run_dir, m in zip(runs, members, strict=True):
        assert summary[f"members/{run_dir.name}/test/acc"] == pytest.approx(
            float((m["test"]["log_probs"].argmax(-1) == target).mean())
        )


def test_learned_weights_maximise_val_likelihood_and_ignore_test_labels(runs, members, tmp_path, monkeypatch):
    summary = ensemble(runs, tmp_path / "a", "learned")
    weights = np.array([summary[f"weights/{r.name}"] for r in runs])
    # Independent fit: the val log-likelihood of w p_face + (1 - w) p_voice on a fine grid of w.
    val_target = members[0]["val"]["target"]
    rows = np.arange(len(val_target))
    picked = np.stack([np.exp(m["val"]["log_probs"][rows, val_target].astype(np.float64)) for m in members])  # (2, N)
    grid = np.linspace(0.0, 1.0, 10001)
    likelihood = np.log(grid[:, None] * picked[0] + (1 - grid[:, None]) * picked[1]).mean(1)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] == pytest.approx(grid[likelihood.argmax()], abs=2e-3)

    # Scramble the test labels the command sees: the weights must not move.
    module = program("ensemble")
    original = module.member_predictions

    def scrambled(run_dir, device):
        preds, run = original(run_dir, device)
        order = np.random.default_rng(0).permutation(len(preds["test"]["target"]))
        for key in ("target", "identity"):
            preds["test"][key] = preds["test"][key][order]
        return preds, run

    monkeypatch.setattr(module, "member_predictions", scrambled)
    assert module.main(["--runs", *map(str, runs), "--combine", "learned", "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [again[f"weights/{r.name}"] for r in runs] == list(weights)


def test_runs_on_different_data_are_refused(runs, tmp_path):
    """A copy of the face run whose record names a dataset with fewer samples per identity."""
    other = tmp_path / "other"
    shutil.copytree(runs[0], other)
    record = json.loads((other / "record.json").read_text())
    record["config"]["data"]["synthetic"]["samples_per_identity"] = 5
    (other / "record.json").write_text(json.dumps(record))
    assert program("ensemble").main(["--runs", str(runs[0]), str(other), "--out", str(tmp_path / "out")]) == 2


def test_the_ensemble_is_one_more_row_of_its_studys_table(runs, tmp_path):
    """record.json makes the ensemble a row of ablate.py's table over its members' folder: fusion `ensemble` on
    the members' modalities together, the test accuracy of its summary, the members' parameters summed."""
    study = tmp_path / "study"
    for run_dir in runs:
        shutil.copytree(run_dir, study / run_dir.name)
    summary = ensemble([study / r.name for r in runs], study / "ensemble-mean", "mean")
    by = ["--by", "model.modalities,model.fusion", "--params", "--metrics", "test/acc"]
    assert ablate.main(["--runs", str(study), *by]) == 0
    table = csv.DictReader((study / "tables" / "study.csv").open())
    rows = {(r["model.modalities"], r["model.fusion"]): r for r in table}
    assert set(rows) == {("face", "early"), ("voice", "early"), ("face+voice", "ensemble")}
    members = [json.loads((r / "record.json").read_text())["summary"] for r in runs]
    assert float(rows["face+voice", "ensemble"]["test/acc mean"]) == pytest.approx(summary["test/acc"], abs=1e-12)
    assert float(rows["face+voice", "ensemble"]["params"]) == sum(m["params"] for m in members)
    for (modality, _), row in rows.items():
        if modality != "face+voice":
            assert float(row["test/acc mean"]) == members[[r.name for r in runs].index(modality)]["test/acc"]


def test_members_without_a_classifier_combine_by_the_mean_cosine():
    """Pair-loss runs have no log_probs: the ensemble's embedding cosine is the members' mean cosine."""
    from research.ensemble import combine_predictions

    rng = np.random.default_rng(0)
    members = [{"embedding": rng.normal(size=(5, d)), "target": np.arange(5)} for d in (3, 4)]
    preds = combine_predictions(members, "mean")
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    expected = np.mean([unit(m["embedding"]) @ unit(m["embedding"]).T for m in members], axis=0)  # (5, 5)
    assert "log_probs" not in preds
    np.testing.assert_allclose(preds["embedding"] @ preds["embedding"].T, expected, atol=1e-6)
    np.testing.assert_array_equal(preds["target"], members[0]["target"])
