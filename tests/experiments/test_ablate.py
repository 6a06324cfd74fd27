"""experiments/ablate.py on a folder of run records: the study presets, the four output files, errors."""

import csv
import json

import numpy as np
import pytest
import yaml
from scipy import stats

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
                summary = {"test/acc": acc, "test/macro_f1": acc / 2, "val/acc": acc, "params": params(mods, fusion)}
                (folder / name).mkdir(parents=True)
                record = {"status": "finished", "config": config, "summary": summary, "started_at": "2026"}
                (folder / name / "record.json").write_text(json.dumps(record))
    return folder, accs


def params(mods: list[str], fusion: str) -> int:
    """A made-up parameter count per row (the same for every seed, as in real runs)."""
    return 1_000_000 * len(mods) + {"late": 0, "early": 20_000, "cross_attn": 450_000}[fusion]


def read_csv(path) -> dict[tuple[str, ...], dict]:
    rows = list(csv.DictReader(path.open()))
    return {tuple(r[k] for k in ("model.modalities", "model.fusion") if k in r): r for r in rows}


def test_the_modality_study_writes_latex_markdown_csv_and_png_with_the_records_numbers(study, capsys):
    folder, accs = study
    assert ablate.main(["--study", "modality", "--runs", str(folder)]) == 0
    out = folder / "tables"
    assert sorted(p.name for p in out.iterdir()) == [
        "modality.csv",
        "modality.md",
        "modality.pdf",
        "modality.png",
        "modality.tex",
    ]
    assert (out / "modality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "modality.md").read_text() in capsys.readouterr().out
    rows = read_csv(out / "modality.csv")
    # The study's order: baseline first, then unimodal.yaml's modalities, fusion_modality.yaml's subsets and
    # fusion types, as the two files list them.
    subsets = ["face+voice", "face+text", "text+voice", "face+text+voice"]
    expected = [("face+text+voice", "late"), ("face", "late"), ("voice", "late"), ("text", "late")]
    expected += [(m, f) for m in subsets for f in ("late", "early", "cross_attn") if (m, f) != expected[0]]
    assert list(rows) == expected
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
    assert [r["model.fusion"] for r in rows] == ["late", "early", "cross_attn"]  # baseline, then the file's order
    for r in rows:
        expected = np.mean([accs[frozenset(["face", "voice", "text"]), r["model.fusion"], s] for s in range(3)])
        assert float(r["val/acc mean"]) == pytest.approx(expected, abs=1e-12)
    best = min(rows, key=lambda r: float(r["val/acc mean"]))["model.fusion"]  # :min = lower is better
    name = {"late": "Late", "early": "Early", "cross_attn": "Cross-attention"}[best]
    assert (
        f"| {name} | 3/3 | {params(['face', 'voice', 'text'], best) / 1e6:.2f}M | **"
        in (folder / "t" / "fusion.md").read_text()
    )


def test_paper_ready_markdown_names_rows_and_columns_and_counts_parameters(study):
    folder, _ = study
    assert ablate.main(["--study", "modality", "--runs", str(folder), "--metrics", "test/acc"]) == 0
    lines = (folder / "tables" / "modality.md").read_text().splitlines()
    assert lines[0] == "| Modalities | Fusion | Seeds | Params | test/acc ↑ | Δ test/acc |"
    body = [line.split(" | ") for line in lines[2:17]]
    assert [cells[:4] for cells in body[:5]] == [
        ["| Face + Text + Voice", "Late", "3/3", "3.00M"],
        ["| Face", "Late", "3/3", "1.00M"],
        ["| Voice", "Late", "3/3", "1.00M"],
        ["| Text", "Late", "3/3", "1.00M"],
        ["| Face + Voice", "Late", "3/3", "2.00M"],
    ]
    assert [cells[1] for cells in body[5:7]] == ["Early", "Cross-attention"]
    assert [cells[3] for cells in body[5:7]] == ["2.02M", "2.45M"]
    assert "baseline row (Face + Text + Voice / Late)" in "\n".join(lines)
    tex = (folder / "tables" / "modality.tex").read_text()
    assert r"Modalities & Fusion & Seeds & Params & test/acc $\uparrow$" in tex
    with open(folder / "tables" / "modality.csv") as f:
        assert next(csv.DictReader(f))["params"] == "3000000.0"  # the CSV keeps full numbers and code names


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_labels_file_renames_values_and_columns(study, suffix):
    folder, _ = study
    labels = {
        "columns": {"model.fusion": "Method", "test/acc": "Accuracy"},
        "values": {"model.fusion": {"cross_attn": "XA (ours)"}},
    }
    path = folder / f"labels.{suffix}"
    path.write_text(json.dumps(labels) if suffix == "json" else yaml.safe_dump(labels))
    args = ["--study", "fusion", "--runs", str(folder), "--metrics", "test/acc", "--labels", str(path)]
    assert ablate.main(args) == 0
    lines = (folder / "tables" / "fusion.md").read_text().splitlines()
    assert lines[0] == "| Method | Seeds | Params | Accuracy ↑ | Δ Accuracy |"
    assert [line.split(" | ")[0] for line in lines[2:5]] == ["| Late", "| Early", "| XA (ours)"]
    records = ablate.select(ablate.load_records(folder), {"model.modalities": "face+text+voice"})
    table = ablate.tables.build_table(records, ["model.fusion"], [("test/eer", "min")])
    table.names.update(labels | {"columns": {"test/eer": "EER"}})
    fig = ablate.bar_chart(table, folder / "chart.png")
    assert [ax.get_title() for ax in fig.axes] == ["EER (%) (lower is better)"]  # the chart's titles too


def test_latex_width_and_no_deltas_options(study):
    folder, _ = study
    args = ["--study", "fusion", "--runs", str(folder), "--metrics", "test/acc"]
    assert ablate.main([*args, "--latex-width", "full", "--no-deltas"]) == 0
    tex = (folder / "tables" / "fusion.tex").read_text()
    assert tex.startswith("\\begin{table*}[t]") and tex.endswith("\\end{table*}\n") and "Delta" not in tex
    assert "\\resizebox{\\ifdim\\width>\\textwidth\\textwidth\\else\\width\\fi}{!}{%" in tex
    assert "| Fusion | Seeds | Params | test/acc ↑ |" in (folder / "tables" / "fusion.md").read_text()
    assert ablate.main(args) == 0
    tex = (folder / "tables" / "fusion.tex").read_text()
    assert tex.startswith("\\begin{table}[t]") and "$\\Delta$ test/acc" in tex and "\\columnwidth" in tex


def test_metrics_only_keeps_the_row_keys_and_the_metric_columns(study):
    folder, _ = study
    args = ["--study", "fusion", "--runs", str(folder), "--metrics", "test/acc", "--metrics-only"]
    assert ablate.main(args) == 0
    assert "| Fusion | test/acc ↑ |" in (folder / "tables" / "fusion.md").read_text()
    tex = (folder / "tables" / "fusion.tex").read_text()
    assert "Seeds" not in tex and "Delta" not in tex and "Params" not in tex


def test_the_loss_study_lists_heads_in_the_sweep_files_order_with_paper_names(tmp_path):
    folder = tmp_path / "loss"
    for loss in ["arcface", "cosface", "softmax", "sphereface", "sphereface2", "sphereface_r"]:  # alphabetical
        for seed in range(2):
            config = {"loss": {"name": loss}, "run": {"seed": seed}}
            (folder / f"{loss}-{seed}").mkdir(parents=True)
            record = {"status": "finished", "config": config, "summary": {"test/acc": 0.5}, "started_at": "2026"}
            (folder / f"{loss}-{seed}" / "record.json").write_text(json.dumps(record))
    assert ablate.main(["--study", "loss", "--runs", str(folder)]) == 0
    lines = (folder / "tables" / "loss.md").read_text().splitlines()
    assert lines[0].startswith("| Loss | Seeds | test/acc ↑")
    names = [line.split(" | ")[0].strip("| ") for line in lines[2:8]]
    # experiments/sweeps/loss.yaml: softmax (the baseline), sphereface, sphereface_r, sphereface2, cosface, arcface.
    assert names == ["Softmax", "SphereFace", "SphereFace-R", "SphereFace2", "CosFace", "ArcFace"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "model.fusion=gated"], "matches 0 rows"),
        (["--where", "model.fusion=gated"], "no run matches"),
        (["--metrics", "test/acc:up"], "min or max"),
        (["--metrics", "test/acc,test/acc_top5"], "unknown metric 'test/acc_top5': no run has it; closest of the 4"),
        (["--baseline", "model.fuson=late"], "unknown --baseline key 'model.fuson': the row keys are model.fusion,"),
    ],
)
def test_a_table_that_cannot_be_made_is_an_error_with_the_reason(study, capsys, args, message):
    folder, _ = study
    assert ablate.main(["--runs", str(folder), "--by", "model.fusion,model.modalities", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_unknown_by_key_is_one_line_naming_the_closest_keys(study, capsys):
    folder, _ = study
    assert ablate.main(["--runs", str(folder), "--by", "model.fuson"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown --by key 'model.fuson': no run has it; closest of the 2 there: model.fusion, model.modalities\n"
    )
    assert not (folder / "tables").exists()


def test_runs_of_two_configurations_in_one_row_are_an_error_naming_them(study, capsys):
    folder, _ = study
    record = json.loads((folder / "late-face-0" / "record.json").read_text())
    record["config"]["model"]["dim"] = 64
    (folder / "late-face-0-wide").mkdir()
    (folder / "late-face-0-wide" / "record.json").write_text(json.dumps(record | {"name": "wide"}))
    assert ablate.main(["--runs", str(folder), "--by", "model.fusion,model.modalities"]) == 2
    assert capsys.readouterr().err == (
        "error: runs 'late-face-0' and 'wide' fall into one row (late / face, seed 0) but differ in "
        "model.dim (- vs 64): add those keys to --by or keep one with --where\n"
    )
    assert ablate.main(["--runs", str(folder), "--by", "model.fusion,model.modalities,model.dim"]) == 0


def test_each_call_says_which_files_it_wrote_and_that_it_replaced_them(study, capsys):
    folder, _ = study
    out = folder / "tables"
    written = ", ".join(str(out / f"modality.{ext}") for ext in ("tex", "md", "csv", "png", "pdf"))
    assert ablate.main(["--study", "modality", "--runs", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {written}"
    assert ablate.main(["--study", "modality", "--runs", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {written} (replacing 5 earlier files)"


def test_power_gives_scipys_interval_and_the_effect_found_with_80_percent_power(study, capsys):
    """The CSV's CI is scipy's paired t interval; at the MDE the paired t-test's power, from the noncentral t
    distribution, is 80 % up to the approximation the formula makes (0.77 at 2 degrees of freedom, 0.79 at 4)."""
    folder, accs = study
    assert ablate.main(["--study", "modality", "--runs", str(folder), "--power"]) == 0
    out = capsys.readouterr().out
    assert "Paired differences to the baseline row" in out and "| Face / Late | test/acc | 3 |" in out
    rows = read_csv(folder / "tables" / "modality.csv")
    base = [accs[frozenset(["face", "voice", "text"]), "late", s] for s in range(3)]
    for (mods, fusion), row in rows.items():
        if (mods, fusion) == ("face+text+voice", "late"):
            assert row["test/acc mde"] == ""
            continue
        values = [accs[frozenset(mods.split("+")), fusion, s] for s in range(3)]
        interval = stats.ttest_rel(values, base).confidence_interval(0.95)
        assert float(row["test/acc ci_low"]) == pytest.approx(interval.low, abs=1e-12)
        assert float(row["test/acc ci_high"]) == pytest.approx(interval.high, abs=1e-12)
        se = np.std(np.subtract(values, base), ddof=1) / np.sqrt(3)
        critical, shift = stats.t.ppf(0.975, 2), float(row["test/acc mde"]) / se
        power = stats.nct.sf(critical, 2, shift) + stats.nct.cdf(-critical, 2, shift)
        assert 0.75 < power < 0.8
