"""Ablation tables: every number is checked against NumPy / SciPy computed here from the records, or
against a hand-worked example."""

import csv
import io
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from scipy import stats

from research import table_formats, tables


def record(seed: int, status: str = "finished", **values) -> dict:
    """A run record: `fusion`, `modalities`, `loss` go to the config, metric names with / to the summary."""
    config = {"model": {"fusion": values.pop("fusion", "late"), "modalities": values.pop("modalities", ["face"])}}
    config |= {"loss": values.pop("loss", {"name": "softmax"}), "run": {"seed": seed, "name": f"r{seed}"}}
    summary = {k.replace("_", "/", 1): v for k, v in values.items()} if status == "finished" else {}
    return {"status": status, "config": config, "summary": summary, "started_at": "2026", "finished_at": "2026"}


def csv_rows(table: tables.Table) -> list[dict]:
    text = io.StringIO()
    csv.writer(text).writerows(table_formats.to_csv(table))
    return list(csv.DictReader(io.StringIO(text.getvalue())))


def test_cells_differences_and_p_values_equal_numpy_and_scipy_on_the_records():
    rng = np.random.default_rng(0)
    acc = {f: rng.uniform(0.5, 0.9, 3) for f in ("late", "early", "cross_attn")}
    eer = {f: rng.uniform(0.05, 0.2, 3) for f in acc}
    records = [record(s, fusion=f, test_acc=acc[f][s], test_eer=eer[f][s]) for f in acc for s in range(3)]
    metrics = [("test/acc", "max"), ("test/eer", "min")]
    table = tables.build_table(records, ["model.fusion"], metrics, baseline={"model.fusion": "late"})
    rows = {r["model.fusion"]: r for r in csv_rows(table)}
    assert [r.label for r in table.rows] == [("late",), ("cross_attn",), ("early",)]  # baseline first
    for f in acc:
        for name, values in (("test/acc", acc[f]), ("test/eer", eer[f])):
            base = acc["late"] if name == "test/acc" else eer["late"]
            assert float(rows[f][f"{name} mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(rows[f][f"{name} std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert rows[f][f"{name} n"] == "3" and rows[f]["seeds_finished"] == "3"
            if f != "late":
                assert float(rows[f][f"{name} delta"]) == pytest.approx(np.mean(values) - np.mean(base), abs=1e-12)
                assert float(rows[f][f"{name} p"]) == pytest.approx(stats.ttest_rel(values, base).pvalue, rel=1e-9)
    assert rows["late"]["test/acc p"] == rows["late"]["test/acc delta"] == ""


def test_the_paired_t_test_matches_a_hand_worked_example_and_daggers_only_below_005_with_4_dof():
    base = [0.5, 0.6, 0.7]
    close = [b + d for b, d in zip(base, [0.1, 0.2, 0.3], strict=True)]  # d: mean 0.2, sd 0.1 -> t = 3.464
    far = [b + d for b, d in zip(base, [0.10, 0.11, 0.09], strict=True)]  # mean 0.1, sd 0.01 -> t = 17.32
    records = [
        record(s, fusion=f, test_acc=v[s])
        for f, v in (("late", base), ("early", close), ("gated", far))
        for s in range(3)
    ]
    table = tables.build_table(records, ["model.fusion"], [("test/acc", "max")], {"model.fusion": "late"})
    p = {row.label[0]: row.cells["test/acc"].p for row in table.rows}
    assert p["early"] == pytest.approx(2 * stats.t.sf(0.2 / (0.1 / math.sqrt(3)), df=2), rel=1e-6)  # 0.0742
    assert p["gated"] == pytest.approx(2 * stats.t.sf(0.1 / (0.01 / math.sqrt(3)), df=2), rel=1e-6)  # 0.0033
    lines = {line.split(" | ")[0].strip("| "): line for line in table_formats.to_markdown(table).splitlines()}
    assert "+0.200 |" in lines["Early"] and "| baseline |" in lines["Late"]
    assert "+0.100 |" in lines["Gated"]  # p = 0.0033 but 2 degrees of freedom: no mark
    # Five seeds (4 degrees of freedom): the same differences are marked where p < 0.05.
    base += [0.55, 0.65]
    close += [base[3] + 0.2, base[4] + 0.2]  # d = 0.1, 0.2, 0.3, 0.2, 0.2: t = 6.32, p = 0.003
    far += [base[3] + 0.1, base[4] + 0.1]
    records = [
        record(s, fusion=f, test_acc=v[s])
        for f, v in (("late", base), ("early", close), ("gated", far))
        for s in range(5)
    ]
    table = tables.build_table(records, ["model.fusion"], [("test/acc", "max")], {"model.fusion": "late"})
    lines = {line.split(" | ")[0].strip("| "): line for line in table_formats.to_markdown(table).splitlines()}
    assert "+0.200† |" in lines["Early"] and "+0.100† |" in lines["Gated"]
    table.deltas = False  # without the Δ columns the mark goes on the mean
    lines = {line.split(" | ")[0].strip("| "): line for line in table_formats.to_markdown(table).splitlines()}
    assert lines["Gated"] == "| Gated | 5/5 | <ins>0.700 ± 0.076</ins>† |"


def test_best_is_bold_and_second_underlined_in_the_direction_of_each_metric():
    values = {"a": (0.9, 0.3), "b": (0.8, 0.1), "c": (0.7, 0.2)}
    records = [record(s, fusion=f, test_acc=acc, test_eer=eer) for f, (acc, eer) in values.items() for s in range(2)]
    metrics = [("test/acc", tables.direction("test/acc")), ("test/eer", tables.direction("test/eer"))]
    assert [goal for _, goal in metrics] == ["max", "min"]
    text = table_formats.to_markdown(tables.build_table(records, ["model.fusion"], metrics))
    cells = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[2:4] for line in text.splitlines() if line.startswith("| ")
    }
    assert cells["a"] == ["**0.900 ± 0.000**", "30.0 ± 0.0 |"]  # EER in percent
    assert cells["b"] == ["<ins>0.800 ± 0.000</ins>", "**10.0 ± 0.0** |"]
    assert cells["c"] == ["0.700 ± 0.000", "<ins>20.0 ± 0.0</ins> |"]
    assert "| test/eer (%) ↓ |" in text and "In percent: test/eer." in text
    latex = table_formats.to_latex(tables.build_table(records, ["model.fusion"], metrics), "Caption", "t")
    assert r"$\mathbf{0.900 \pm 0.000}$" in latex and r"$\underline{0.800 \pm 0.000}$" in latex


def test_a_failed_or_missing_seed_is_shown_and_the_row_is_not_ranked():
    records = [record(s, fusion="late", test_acc=0.5 + 0.01 * s) for s in range(3)]
    records += [record(s, fusion="early", test_acc=0.9) for s in (0, 1)] + [record(2, "failed", fusion="early")]
    records += [record(s, fusion="gated", test_acc=0.95) for s in (0, 2)]  # seed 1 never ran
    table = tables.build_table(records, ["model.fusion"], [("test/acc", "max")], {"model.fusion": "late"})
    rows = {r["model.fusion"]: r for r in csv_rows(table)}
    assert rows["early"]["runs"] == "0:finished 1:finished 2:failed" and rows["early"]["test/acc n"] == "2"
    assert rows["gated"]["runs"] == "0:finished 1:missing 2:finished" and rows["gated"]["seeds_finished"] == "2"
    text = table_formats.to_markdown(table)
    assert "| Early | 2/3 | 0.900 ± 0.000 ‡ |" in text and "| Gated | 2/3 | 0.950 ± 0.000 ‡ |" in text
    assert "| Late | 3/3 | **0.510 ± 0.010** |" in text  # the only complete row is the best one
    assert "‡ Early: incomplete (seed 2 failed)" in text and "‡ Gated: incomplete (seed 1 missing)" in text


def test_fewer_than_two_paired_seeds_give_no_test_and_say_so():
    records = [record(s, fusion="late", test_acc=0.5 + 0.1 * s) for s in (0, 1)]
    records += [record(s, fusion="early", test_acc=0.7 + 0.1 * s) for s in (1, 2)]
    table = tables.build_table(records, ["model.fusion"], [("test/acc", "max")], {"model.fusion": "late"})
    early = table.rows[[r.label for r in table.rows].index(("early",))].cells["test/acc"]
    assert early.p is None and early.delta == pytest.approx(np.mean([0.8, 0.9]) - np.mean([0.5, 0.6]))
    assert "No test for: Early." in table_formats.notes(table)


def test_rows_come_from_dotted_and_templated_keys_in_a_natural_order():
    margin = {"arcface": {"margin": 0.5}, "cosface": {"margin": 0.35}}
    records = [
        record(0, loss={"name": "arcface", **margin, "arcface": {"margin": 0.3}}, test_acc=0.1),
        record(0, loss={"name": "cosface", **margin}, test_acc=0.2),
        record(0, loss={"name": "softmax", **margin}, test_acc=0.3),
        record(0, loss={"name": "softmax", **margin}, modalities=["voice", "face"], test_acc=0.4),
    ]
    assert tables.swept_keys(records) == ["loss.arcface.margin", "loss.name", "model.modalities"]
    table = tables.build_table(
        records, ["loss.name", "loss.{loss.name}.margin", "model.modalities"], [("test/acc", "max")]
    )
    assert [r.label for r in table.rows] == [
        ("arcface", "0.3", "face"),
        ("cosface", "0.35", "face"),
        ("softmax", "-", "face"),  # softmax has no margin section
        ("softmax", "-", "face+voice"),  # more modalities after fewer
    ]
    assert tables.config_value({"model.fusion": "late", "model": {}}, "model.fusion") == "late"  # W&B flat keys


def test_latex_is_a_booktabs_table_with_escaped_text_and_aligned_columns():
    records = [
        record(s, fusion=f, test_acc=0.5 + 0.1 * s + (f == "cross_attn") * 0.05)
        for f in ("late", "cross_attn")
        for s in range(3)
    ]
    records.append(record(3, "failed", fusion="cross_attn"))
    table = tables.build_table(records, ["model.fusion"], [("test/acc", "max")], {"model.fusion": "late"})
    latex = table_formats.to_latex(table, "Fusion 100% synthetic", "fusion")
    lines = latex.splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    for command in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\label{tab:fusion}",
        r"\caption{Fusion 100\% synthetic}",
    ):
        assert command in lines
    header, body = (
        lines[lines.index(r"\toprule") + 1],
        lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")],
    )
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", latex).group(1)
    assert len(body) == 2 and all(row.count("&") == header.count("&") == len(columns) - 1 for row in body)
    assert body[0].startswith(r"Late & 3/4 & $0.600 \pm 0.100^\ddagger$ & baseline")  # the baseline row first
    assert body[1].startswith(r"Cross-attention & 3/4 & $0.650 \pm 0.100^\ddagger$")
    assert not re.search(r"[±Δ†‡↑↓<]", latex.replace("$<$", ""))  # every symbol written as LaTeX math


def test_a_rerun_of_one_configuration_is_picked_but_two_configurations_are_an_error():
    rerun = [record(0, "failed", fusion="late"), record(0, fusion="late", test_acc=0.7)]
    table = tables.build_table(rerun, ["model.fusion"], [("test/acc", "max")])
    assert table.rows[0].runs == {0: "finished"} and table.rows[0].cells["test/acc"].mean == 0.7
    other = record(0, fusion="late", test_acc=0.2)
    other["config"]["loss"] = {"name": "arcface"}
    with pytest.raises(
        tables.TableError,
        match=r"runs 'r0' and 'r0' fall into one row \(late, seed 0\) but differ "
        r"in loss.name \(softmax vs arcface\)",
    ):
        tables.build_table([*rerun, other], ["model.fusion"], [("test/acc", "max")])


def wide_table() -> tables.Table:
    """A study-sized table: 4 rows, 7 metrics (EER and minDCF among them), Δ columns, long names."""
    metrics = ["test_acc", "test_macro_f1", "test_subject_acc", "test_eer", "test_min_dcf_0.01"]
    metrics += ["test_fair/gender/acc/gap", "test_without_text/acc"]
    subsets = (["face", "text", "voice"], ["face"], ["voice"], ["text"])
    records = [
        record(s, modalities=m, **{k: 0.1 + 0.01 * s + 0.1 * i for k in metrics})
        for i, m in enumerate(subsets)
        for s in range(5)
    ]
    named = [(k.replace("_", "/", 1), tables.direction(k)) for k in metrics]
    return tables.build_table(records, ["model.modalities"], named, {"model.modalities": "face+text+voice"})


def pdflatex_log(folder, latex: str, options: str) -> str:
    """Compile `latex` in an article with `options` (pdflatex); the log. Skips without a TeX engine."""
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None:
        pytest.skip("no TeX engine (pdflatex) on PATH")
    packages = subprocess.run(["kpsewhich", "booktabs.sty", "graphicx.sty"], capture_output=True, text=True)
    if len(packages.stdout.split()) != 2:
        pytest.skip("pdflatex without booktabs or graphicx (texlive-latex-recommended)")
    (folder / "table.tex").write_text(latex)
    document = rf"\documentclass[{options}]{{article}}\usepackage{{booktabs,graphicx}}"
    (folder / "doc.tex").write_text(document + "\n\\begin{document}\n\\input{table}\n\\end{document}\n")
    command = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    log = (folder / "doc.log").read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    return log


@pytest.mark.parametrize("options", ["twocolumn", "onecolumn"])
@pytest.mark.parametrize("width", ["column", "full"])
@pytest.mark.parametrize("deltas", [True, False])
def test_the_latex_compiles_and_fits_the_column_or_the_page(tmp_path, options, width, deltas):
    table = wide_table()
    table.deltas = deltas
    latex = table_formats.to_latex(table, "Age group from face, voice and text", "age", width=width)
    log = pdflatex_log(tmp_path, latex, options)
    assert "Overfull \\hbox" not in log  # the tabular is shrunk to \columnwidth (table) or \textwidth (table*)
    assert ("table*" in latex) == (width == "full")


def test_the_width_check_sees_a_table_that_overflows(tmp_path):
    """Without the \\resizebox line (and its closing brace) the same table overflows the column: the check
    above can fail."""
    latex = table_formats.to_latex(wide_table(), "Caption", "age").replace(r"\end{tabular}}", r"\end{tabular}")
    latex = "\n".join(line for line in latex.splitlines() if not line.startswith(r"\resizebox"))
    assert "Overfull \\hbox" in pdflatex_log(tmp_path, latex, "twocolumn")
