"""experiments/ablate.py on a folder of run records: the study presets, the four output files, errors."""

import csv
import json

import numpy as np
import pytest

from experiments import ablate

SUBSETS = [
    ["face"],
    ["voice"],
    ["text"],
    ["face", "voice"],
    ["face", "text"],
    ["text", "voice"],
    ["face", "voice", "text"],
]


@pytest.fixture
def study(tmp_path):
    """runs/fusion_modality as the two sweep files leave it: unimodal rows with late fusion only."""
    folder = tmp_path / "fusion_modality"
    rng = np.random.default_rng(1)
    accs = {}
    for mods in SUBSETS:
        for fusion in ["late"] if len(mods) == 1 else ["late", "early", "cross_attn"]:
            for seed in range(3):
                name = f"{fusion}-{'+'.join(mods)}-{seed}"
                acc = accs[frozenset(mods), fusion, seed] = float(rng.uniform(0.2, 1.0))
                config = {"model": {"modalities": mods, "fusion": fusion}, "run": {"seed": seed, "name": name}}
                summary = {"test/acc": acc, "test/macro_f1": acc / 2, "val/acc": acc}
                (folder / name).mkdir(parents=True)
                record = {"status": "finished", "config": config, "summary": summary, "started_at": "2026"}
                (folder / name / "record.json").write_text(json.dumps(record))
    return folder, accs


def read_csv(path) -> dict[tuple[str, ...], dict]:
    rows = list(csv.DictReader(path.open()))
    return {tuple(r[k] for k in ("model.modalities", "model.fusion") if k in r): r for r in rows}


def test_the_modality_study_writes_latex_markdown_csv_and_png_with_the_records_numbers(study, capsys):
    folder, accs = study
    assert ablate.main(["--study", "modality", "--runs", str(folder)]) == 0
    out = folder / "tables"
    assert sorted(p.name for p in out.iterdir()) == ["modality.csv", "modality.md", "modality.png", "modality.tex"]
    assert (out / "modality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "modality.md").read_text() in capsys.readouterr().out
    rows = read_csv(out / "modality.csv")
    assert len(rows) == 15 and list(rows)[:3] == [("face", "late"), ("text", "late"), ("voice", "late")]
    base = [accs[frozenset(["face", "voice", "text"]), "late", s] for s in range(3)]
    for (mods, fusion), row in rows.items():
        values = [accs[frozenset(mods.split("+")), fusion, s] for s in range(3)]
        assert float(row["test/acc mean"]) == pytest.approx(np.mean(values), abs=1e-12)
        assert float(row["test/acc std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert float(row["test/macro_f1 mean"]) == pytest.approx(np.mean(values) / 2, abs=1e-12)
        if (mods, fusion) != ("face+text+voice", "late"):
            assert float(row["test/acc delta"]) == pytest.approx(np.mean(values) - np.mean(base), abs=1e-12)
    assert "test/eer mean" not in rows[("face", "late")]  # only metrics the runs have


def test_the_fusion_study_keeps_the_three_modality_runs_and_takes_options(study):
    folder, accs = study
    args = ["--study", "fusion", "--runs", str(folder), "--metrics", "val/acc:min", "--out", str(folder / "t")]
    assert ablate.main(args) == 0
    rows = list(csv.DictReader((folder / "t" / "fusion.csv").open()))
    assert [r["model.fusion"] for r in rows] == ["cross_attn", "early", "late"]
    for r in rows:
        expected = np.mean([accs[frozenset(["face", "voice", "text"]), r["model.fusion"], s] for s in range(3)])
        assert float(r["val/acc mean"]) == pytest.approx(expected, abs=1e-12)
    best = min(rows, key=lambda r: float(r["val/acc mean"]))["model.fusion"]  # :min = lower is better
    assert f"| {best} | 3/3 | **" in (folder / "t" / "fusion.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "model.fusion=gated"], "matches 0 rows"),
        (["--where", "model.fusion=gated"], "no run matches"),
        (["--metrics", "test/acc:up"], "min or max"),
    ],
)
def test_a_table_that_cannot_be_made_is_an_error_with_the_reason(study, capsys, args, message):
    folder, _ = study
    assert ablate.main(["--runs", str(folder), "--by", "model.fusion,model.modalities", *args]) == 2
    assert message in capsys.readouterr().err
