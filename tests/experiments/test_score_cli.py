"""experiments/score.py end to end: the real VoxCeleb1-O list scored on synthetic embeddings of its 4,708 files,
against cosines and metrics computed here; missing keys; AS-norm equal to the training report's; calibration."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import score
from research import scoring
from research.metrics import verification

VOX1_O = Path("/work/shared/data/voxceleb1/veri_test2.txt")


@pytest.fixture(scope="module")
def vox(tmp_path_factory):
    """Embeddings (D = 16) for every file of VoxCeleb1-O: a centre per speaker plus noise; a cohort file."""
    root = tmp_path_factory.mktemp("vox")
    rows = [line.split() for line in VOX1_O.read_text().splitlines()]
    keys = sorted({k for r in rows for k in r[1:]})
    rng = np.random.default_rng(0)
    centres = {s: rng.normal(size=16) for s in sorted({k.split("/")[0] for k in keys})}
    emb = {k: (centres[k.split("/")[0]] + rng.normal(size=16)).astype(np.float32) for k in keys}
    save_file(emb, str(root / "emb.safetensors"))
    cohort = {f"c{n}": rng.normal(size=16).astype(np.float32) for n in range(300)}
    save_file(cohort, str(root / "cohort.safetensors"))
    return root, rows, emb, cohort


def cli(*args) -> int:
    return score.main([str(a) for a in args])


def test_voxceleb1_o_scores_and_metrics(vox, tmp_path):
    root, rows, emb, _ = vox
    assert cli("--embeddings", root / "emb.safetensors", "--trials", VOX1_O, "--out", tmp_path / "s",
               "--json", tmp_path / "r.json") == 0  # fmt: skip
    labels = np.array([r[0] == "1" for r in rows])
    expected = []
    for _, e, t in rows:
        x, y = emb[e].astype(np.float64), emb[t].astype(np.float64)
        expected.append(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    lines = [line.split() for line in (tmp_path / "s").read_text().splitlines()]
    assert [(a, b) for a, b, _, _ in lines] == [(e, t) for _, e, t in rows]
    assert [c == "target" for *_, c in lines] == labels.tolist()
    np.testing.assert_allclose([float(s) for _, _, s, _ in lines], expected, atol=1e-6)
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["trials"] == 37611 and record["skipped"] == 0
    assert record["eer"] == pytest.approx(verification.eer(np.array(expected), labels)[0], abs=1e-9)
    assert record["min_dcf_0.01"] == pytest.approx(verification.min_dcf(np.array(expected), labels, 0.01), abs=1e-9)
    assert record["min_dcf_0.05"] == pytest.approx(verification.min_dcf(np.array(expected), labels, 0.05), abs=1e-9)
    assert 0.05 < record["eer"] < 0.45  # the synthetic embeddings separate speakers, not perfectly


def test_missing_key_exits_2_naming_line_and_key(vox, tmp_path, capsys):
    root, rows, *_ = vox
    trials = tmp_path / "t.txt"
    trials.write_text(" ".join(rows[0]) + "\n0 nobody/x/1.wav " + rows[1][2] + "\n" + " ".join(rows[1]))
    assert cli("--embeddings", root / "emb.safetensors", "--trials", trials) == 2
    assert "line 2: key 'nobody/x/1.wav' is not in the embeddings file" in capsys.readouterr().err
    assert cli("--embeddings", root / "emb.safetensors", "--trials", trials, "--on-missing", "skip",
               "--json", tmp_path / "r.json") == 0  # fmt: skip
    record = json.loads((tmp_path / "r.json").read_text())
    assert (record["trials"], record["skipped"]) == (2, 1)
    assert len((tmp_path / "t.scores").read_text().splitlines()) == 2  # default: beside the trials


def test_unlabelled_kaldi_list_writes_scores_only(vox, tmp_path):
    root, rows, *_ = vox
    trials = tmp_path / "t.txt"
    trials.write_text("".join(f"{e} {t}\n" for _, e, t in rows[:50]))
    assert cli("--embeddings", root / "emb.safetensors", "--trials", trials, "--json", tmp_path / "r.json") == 0
    assert json.loads((tmp_path / "r.json").read_text())["eer"] is None
    assert all(len(line.split()) == 3 for line in (tmp_path / "t.scores").read_text().splitlines())


def test_mean_and_as_norm_equal_the_training_report(vox, tmp_path):
    """--mean M --cohort C: verification.verify on (embeddings - mean M) with cohort (C - mean M), same trials."""
    root, rows, emb, cohort = vox
    save_file({k: v + 0.5 for k, v in list(cohort.items())[:50]}, str(tmp_path / "train.safetensors"))
    args = ["--embeddings", root / "emb.safetensors", "--trials", VOX1_O, "--out", tmp_path / "s", "--json"]
    norm = ["--mean", tmp_path / "train.safetensors", "--cohort", root / "cohort.safetensors", "--top-k", 20]
    assert cli(*args, tmp_path / "r.json", *norm) == 0
    keys = list(emb)
    where = {k: n for n, k in enumerate(keys)}
    mean = np.mean([v + 0.5 for v in list(cohort.values())[:50]], axis=0, dtype=np.float64)
    matrix = np.stack([emb[k] for k in keys]).astype(np.float64) - mean
    i, j = np.array([where[r[1]] for r in rows]), np.array([where[r[2]] for r in rows])
    labels = np.array([r[0] == "1" for r in rows])
    cohort_matrix = np.stack(list(cohort.values())).astype(np.float64) - mean
    train = np.arange(10000, 10300)  # ids apart from the evaluated 0 .. 4707
    found, _ = verification.verify(
        matrix, np.arange(len(keys)), train, cohort=(cohort_matrix, train), top_k=20, trials=(i, j, labels)
    )
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["eer"] == pytest.approx(found["eer"], abs=1e-9)
    assert record["min_dcf_0.01"] == pytest.approx(found["min_dcf_0.01"], abs=1e-9)


def test_calibration_on_a_dev_list(vox, tmp_path):
    """Dev = the first half of VoxCeleb1-O's lines, eval = the rest: the llr file is a * score + b of the score
    file, Cllr falls, min Cllr stays."""
    root, rows, *_ = vox
    (tmp_path / "dev.txt").write_text("\n".join(" ".join(r) for r in rows[::2]))
    (tmp_path / "eval.txt").write_text("\n".join(" ".join(r) for r in rows[1::2]))
    emb = ["--embeddings", root / "emb.safetensors"]
    assert cli(*emb, "--trials", tmp_path / "dev.txt") == 0
    assert cli(*emb, "--trials", tmp_path / "eval.txt", "--calibrate", tmp_path / "dev.scores",
               "--json", tmp_path / "r.json") == 0  # fmt: skip
    record = json.loads((tmp_path / "r.json").read_text())
    a, b = record["calibration"]["a"], record["calibration"]["b"]
    assert (a, b) == pytest.approx(scoring.fit_calibration(*scoring.read_scores(tmp_path / "dev.scores")))
    raw, labels = scoring.read_scores(tmp_path / "eval.scores")
    llr, llr_labels = scoring.read_scores(tmp_path / "eval.llr")
    assert (llr_labels == labels).all()
    np.testing.assert_allclose(llr, a * raw + b, atol=2e-6 * max(1, abs(a)))
    assert record["cllr_calibrated"] < record["cllr"]
    assert record["min_cllr_calibrated"] == pytest.approx(record["min_cllr"], abs=1e-9)
    assert record["cllr_calibrated"] == pytest.approx(scoring.cllr(llr, labels), abs=1e-4)
