"""experiments/embed.py, in both backends: a run's test split embedded and scored by experiments/score.py on the
run's own verification trials (its report's trials.csv, written as a trial list) gives the EER and minDCF that
the report printed, and with the training split's identity means as the cohort the AS-normed EER of the report;
a folder of WAV files is keyed by relative paths and embedded as the same files from the manifest; windows."""

import importlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from experiments import embed, score
from research.config import Config
from research.config_parse import apply_overrides
from research.data import manifest, synthetic
from research.data.decode import Decoded
from research.embedding import windowed
from research.metrics.verification import class_means
from research.report import final_report
from research.restore import restore


@pytest.fixture(scope="module", params=["torch", "jax"])
def run(request, tmp_path_factory):
    """A tiny open-split speaker run of each backend, its report, and the report again with AS-norm."""
    root = tmp_path_factory.mktemp(request.param)
    cfg = apply_overrides(Config(), [
        f"--run.out={root / 'runs'}", f"--data.root={root.parent / 'data'}", "--run.wandb=disabled",
        "--run.progress=false", "--data.synthetic.identities=10", "--data.synthetic.samples_per_identity=6",
        "--data.voice_seconds=0.5", "--data.batch_size=8", "--model.dim=32", "--model.layers=1", "--optim.epochs=1",
        "--eval.plots=false", "--eval.trials=200", "--data.split=open", "--modalities=voice", "--fusion=late",
        f"--backend={request.param}", "--run.name=speaker",
    ])  # fmt: skip
    run_dir = Path(cfg.run.out) / "speaker"
    importlib.import_module(f"research.{request.param}.trainer").train_and_evaluate(cfg, run_dir, "speaker")
    restored = restore(run_dir, "cpu")
    normed = replace(restored.cfg, eval=replace(restored.cfg.eval, as_norm=True))
    as_normed = final_report(restored.backend, restored.model, restored.splits, normed, restored.device,
                             root / "as_norm", [])  # fmt: skip
    summary = json.loads((run_dir / "record.json").read_text())["summary"]
    return {"dir": run_dir, "cfg": cfg, "splits": restored.splits, "summary": summary, "as_norm": as_normed}


def embedded(run: dict, out: Path, *args: str) -> dict[str, np.ndarray]:
    argv = ["--run", str(run["dir"]), "--out", str(out), "--device", "cpu", "--no-progress", *args]
    assert embed.main(argv) == 0
    return load_file(str(out))


def test_embeddings_scored_by_score_py_give_the_report_figures(run, tmp_path):
    data = synthetic.ensure(run["cfg"].data)  # the run's manifest
    test = embedded(run, tmp_path / "test.safetensors", "--input", str(data), "--split", "test")
    ids = run["splits"].test.ids
    assert sorted(test) == sorted(ids) and {v.shape for v in test.values()} == {(32,)}
    trials = np.loadtxt(run["dir"] / "eval" / "test" / "trials.csv", delimiter=",", skiprows=1, usecols=(0, 1, 4))
    lines = [f"{int(t)} {ids[int(i)]} {ids[int(j)]}" for i, j, t in trials]
    (tmp_path / "trials.txt").write_text("\n".join(lines) + "\n")
    result = tmp_path / "result.json"
    assert score.main(["--embeddings", str(tmp_path / "test.safetensors"), "--trials", str(tmp_path / "trials.txt"),
                       "--json", str(result)]) == 0  # fmt: skip
    found, report = json.loads(result.read_text()), run["summary"]
    assert found["trials"] == len(trials) > 50
    for key in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
        assert found[key] == pytest.approx(report[f"test/{key}"], abs=1e-6), key

    train = embedded(run, tmp_path / "train.safetensors", "--input", str(data), "--split", "train")
    rows = {r.id: r.subject for r in manifest.read(data)}
    keys = sorted(train)
    means, subjects = class_means(np.stack([train[k] for k in keys]), np.array([rows[k] for k in keys]))
    save_file({str(s): m.astype(np.float32) for s, m in zip(subjects, means, strict=True)}, str(tmp_path / "c.st"))
    assert score.main(["--embeddings", str(tmp_path / "test.safetensors"), "--trials", str(tmp_path / "trials.txt"),
                       "--cohort", str(tmp_path / "c.st"), "--top-k", str(run["cfg"].eval.as_norm_top_k),
                       "--json", str(result)]) == 0  # fmt: skip
    normed = json.loads(result.read_text())
    assert normed["eer"] == pytest.approx(run["as_norm"]["test/eer"], abs=1e-6)
    assert normed["min_dcf_0.01"] == pytest.approx(run["as_norm"]["test/min_dcf_0.01"], abs=1e-6)
    assert normed["eer"] != found["eer"] or normed["min_dcf_0.01"] != found["min_dcf_0.01"]  # AS-norm did something


def test_a_folder_of_wav_files_is_keyed_by_relative_paths(run, tmp_path):
    data = synthetic.ensure(run["cfg"].data)
    rows = [r for r in manifest.read(data) if r.open_split == "test"][:5]
    folder = tmp_path / "wavs"
    for k, r in enumerate(rows):
        target = folder / f"id{k % 2}" / f"video{k}" / f"{k:05d}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data.parent / r.voice, target)
    (folder / "notes.md").write_text("not an input")
    found = embedded(run, tmp_path / "folder.safetensors", "--input", str(folder))
    assert sorted(found) == [f"id{k % 2}/video{k}/{k:05d}.wav" for k in sorted(range(5), key=lambda k: (k % 2, k))]
    by_row = embedded(run, tmp_path / "rows.safetensors", "--input", str(data), "--split", "test")
    for k, r in enumerate(rows):
        np.testing.assert_allclose(found[f"id{k % 2}/video{k}/{k:05d}.wav"], by_row[r.id], atol=1e-5)

    whole = embedded(run, tmp_path / "w.safetensors", "--input", str(folder), "--window", "5", "--modality", "voice")
    for key, value in found.items():  # one window holds the whole voice: its unit embedding
        np.testing.assert_allclose(whole[key], value / np.linalg.norm(value), atol=1e-5)
    assert embed.main(["--run", str(run["dir"]), "--input", str(folder), "--out", str(tmp_path / "x"),
                       "--modality", "face", "--no-progress"]) == 2  # fmt: skip

    other = {"torch": "jax", "jax": "torch"}[run["cfg"].run.backend]  # the run's weights in the other backend
    converted = embedded(run, tmp_path / "o.safetensors", "--input", str(folder), "--backend", other)
    for key, value in found.items():
        np.testing.assert_allclose(converted[key], value, atol=1e-5)


def test_windows_cover_the_voice_and_end_at_its_end():
    voice = np.arange(100, dtype=np.float32)
    samples = [Decoded(None, None, voice, None), Decoded(None, None, voice[:30], None), Decoded(None, None, None, "x")]
    parts, owner = windowed(samples, window=4.0, hop=3.0, rate=10)  # 40 samples every 30
    starts = [int(p.voice[0]) for p in parts[:-2]]
    assert starts == [0, 30, 60] and owner.tolist() == [0, 0, 0, 1, 2]
    assert len(parts[3].voice) == 30 and parts[4].voice is None  # shorter than a window: whole; no voice: as is
