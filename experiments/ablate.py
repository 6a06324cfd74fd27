"""Paper-ready ablation tables from a study's runs: LaTeX (booktabs), Markdown, CSV and a bar chart (PNG).

    python experiments/ablate.py --study modality     # runs/fusion_modality: each modality, pair, all three
    python experiments/ablate.py --study fusion       # fusion types on face + voice + text
    python experiments/ablate.py --study loss         # runs/loss, against softmax
    python experiments/ablate.py --group G --by model.dim,optim.lr --metrics test/acc,wall_time_s:min
    python experiments/ablate.py --study modality --wandb ENTITY/PROJECT    # the runs of W&B group instead
    python experiments/ablate.py --study loss --params --labels names.yaml  # parameter column, custom names

Rows are the values of the swept config keys (--by, default: every key that differs between runs except
run.*), one run per run.seed, in the study's order (its sweep files') with the baseline first, under
paper names (research/table_names.py). Files go to OUT/NAME.{tex,md,csv,png,pdf}; docs/sweeps.md explains the marks.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for research.tables

from research import plots, table_formats, table_names, tables  # noqa: E402
from research.config import Config, ConfigError  # noqa: E402
from research.config_parse import set_value, to_dict  # noqa: E402

SWEEPS = Path(__file__).resolve().parent / "sweeps"
STUDIES = {
    "modality": {
        "group": "fusion_modality",
        "by": "model.modalities,model.fusion",
        "baseline": "model.modalities=face+text+voice,model.fusion=late",
        "caption": "Modality ablation: each modality alone, each pair and all three, by fusion type",
        "sweeps": "unimodal.yaml,fusion_modality.yaml",
        "params": True,
    },
    "fusion": {
        "group": "fusion_modality",
        "by": "model.fusion",
        "where": "model.modalities=face+text+voice",
        "baseline": "model.fusion=late",
        "caption": "Fusion type on face, voice and text",
        "sweeps": "fusion_modality.yaml",
        "params": True,
    },
    "loss": {
        "group": "loss",
        "by": "loss.name",
        "baseline": "loss.name=softmax",
        "caption": "Loss type",
        "sweeps": "loss.yaml",
    },
    "margin": {
        "group": "margin",
        "by": "loss.name,loss.{loss.name}.margin",
        "caption": "Margin of the margin losses",
        "sweeps": "margin_cosface.yaml,margin_arcface.yaml",
    },
}
DEFAULT_METRICS = ("test/acc", "test/macro_f1", "test/eer")  # those present in the records
WANDB_STATUS = {"crashed": "failed", "killed": "interrupted", "preempted": "interrupted"}  # others keep their name


def load_records(folder: Path) -> list[dict[str, Any]]:
    """Every `record.json` under `folder` (one per run directory)."""
    paths = sorted(folder.rglob("record.json"))
    if not paths:
        raise tables.TableError(f"no record.json under {folder}")
    return [json.loads(path.read_text()) for path in paths]


def wandb_records(path: str, group: str) -> list[dict[str, Any]]:
    """The runs of a W&B group (public API) as run records: name, status, config, summary."""
    import wandb

    return [
        {
            "name": run.name,
            "status": WANDB_STATUS.get(run.state, run.state),
            "config": {k: v for k, v in run.config.items() if not k.startswith("_")},
            "summary": dict(run.summary_metrics),
            "started_at": run.created_at,
        }
        for run in wandb.Api().runs(path, filters={"group": group})
    ]


def study_order(paths: list[Path], keys: list[str]) -> dict[str, list[str]]:
    """Each key's values in the order the sweep files list them (files in the given order), as the table
    prints them: `face,voice` becomes `face+voice` through the config's own parsing."""
    order: dict[str, list[str]] = {}
    for path in paths:
        parameters = yaml.safe_load(path.read_text()).get("parameters", {})
        for key in keys:
            spec, listed = parameters.get(key, {}), order.setdefault(key, [])
            for value in spec.get("values", [spec["value"]] if "value" in spec else []):
                text = tables.label(_parsed(key, value))
                if text not in listed:
                    listed.append(text)
    return order


def _parsed(key: str, value: Any) -> Any:
    """A sweep value as the run's config holds it (a tuple for `face,voice`); unknown keys as written."""
    cfg = Config()
    try:
        set_value(cfg, key, value)
    except ConfigError:
        return value
    return tables.config_value(to_dict(cfg), key)


def read_labels(path: Path) -> dict[str, Any]:
    """A labels file (YAML or JSON, JSON being YAML): {"columns": {...}, "values": {key: {value: name}}}."""
    try:
        labels = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise tables.TableError(f"cannot read labels file {path}: {err}") from None
    if not isinstance(labels, dict) or set(labels) - {"columns", "values"}:
        raise tables.TableError(
            "a labels file maps 'columns' (key or metric: header) and 'values' (key: {value: name})"
        )
    for key, names in (labels.get("values") or {}).items():
        if not isinstance(names, dict):
            raise tables.TableError(f"labels file: values of {key!r} must map each value to its name")
    return labels


def select(records: list[dict[str, Any]], where: dict[str, str]) -> list[dict[str, Any]]:
    """The records whose config matches every key=value (values as `tables.label` prints them)."""
    return [r for r in records if all(tables.label(tables.config_value(r["config"], k)) == v for k, v in where.items())]


def parse_metrics(text: str) -> list[tuple[str, str]]:
    """`test/acc,test/eer:min` -> [("test/acc", "max"), ("test/eer", "min")]; no suffix: by name."""
    metrics = []
    for item in filter(None, text.split(",")):
        name, _, goal = item.partition(":")
        if goal not in ("", "min", "max"):
            raise tables.TableError(f"metric {item!r}: the direction after ':' is min or max")
        metrics.append((name, goal or tables.direction(name)))
    return metrics


def parse_selection(text: str | None) -> dict[str, str]:
    """`model.fusion=late,model.modalities=face+voice` -> {key: label}."""
    pairs = [item.partition("=") for item in filter(None, (text or "").split(","))]
    if any(not eq for _, eq, _ in pairs):
        raise tables.TableError(f"expected key=value pairs separated by commas, got {text!r}")
    return {key: value for key, _, value in pairs}


@plots.styled
def bar_chart(table: tables.Table, path: Path) -> Figure:
    """One panel per metric: mean with a ±std error bar per row; incomplete rows hatched, baseline grey.
    PNG at `path`, PDF beside it."""
    labels = [" / ".join(table.display(row)) for row in table.rows]
    width = max(4.0, 0.45 * len(labels) + 1.5)
    fig = Figure(figsize=(width * len(table.metrics), 4))
    axes = fig.subplots(1, len(table.metrics), squeeze=False)
    for ax, (name, goal) in zip(axes[0], table.metrics, strict=True):
        cells = [row.cells[name] for row in table.rows]
        scale = 100 if table_names.in_percent(name) else 1
        colors = ["tab:gray" if i == table.baseline else "tab:blue" for i in range(len(cells))]
        errors = [0.0 if c.std != c.std else scale * c.std for c in cells]  # nan std (one seed): no bar
        bars = ax.bar(range(len(cells)), [scale * c.mean for c in cells], yerr=errors, capsize=3, color=colors)
        for bar, cell in zip(bars, cells, strict=True):
            if not cell.complete:
                bar.set(hatch="//", alpha=0.5)
        ax.set_xticks(range(len(cells)), labels, rotation=45, ha="right")
        ax.set_title(f"{table.header(name)} ({'higher' if goal == 'max' else 'lower'} is better)")
        ax.set_ylabel(table.header(name))
    plots.save(fig, path)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=STUDIES, help="preset of the options below")
    parser.add_argument("--group", help="the study's group: folder runs/GROUP, or the W&B group")
    parser.add_argument("--runs", type=Path, help="folder of run records (default runs/GROUP)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the group's runs from the W&B API")
    parser.add_argument("--by", help="row keys, comma-separated dotted config keys")
    parser.add_argument("--where", help="keep runs with key=value,... (values as printed in the table)")
    parser.add_argument("--baseline", help="the row compared against, key=value,...")
    parser.add_argument("--metrics", help="columns, e.g. test/acc,test/eer:min (default: test acc, macro-F1, EER)")
    parser.add_argument("--seeds", help="expected seeds, e.g. 0,1,2 (default: every seed in the runs)")
    parser.add_argument("--out", type=Path, help="output folder (default RUNS/tables)")
    parser.add_argument("--name", help="output file stem (default: the study or group)")
    parser.add_argument("--caption", help="LaTeX caption")
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--sweeps", help="sweep files whose value order the rows follow (default: the study's)")
    parser.add_argument("--params", action="store_true", help="a column with each row's parameter count")
    parser.add_argument("--labels", type=Path, help="YAML/JSON of custom names: {columns: {...}, values: {...}}")
    parser.add_argument(
        "--latex-width",
        choices=table_formats.LATEX_WIDTHS,
        default="column",
        help="LaTeX float: table shrunk to \\columnwidth (default) or table* shrunk to \\textwidth",
    )
    parser.add_argument("--no-deltas", action="store_true", help="drop the Δ columns (LaTeX, Markdown)")
    parser.add_argument(
        "--power", action="store_true", help="also each row's paired differences: 95 %% CI, p and the MDE (Markdown)"
    )
    parser.add_argument(
        "--metrics-only", action="store_true", help="row keys and metric columns only: no Seeds, Params or Δ columns"
    )
    args = parser.parse_args(argv)
    for key, value in STUDIES.get(args.study, {}).items():
        setattr(args, key, getattr(args, key) or value)
    if not (args.group or args.runs):
        parser.error("give --study, --group or --runs")
    try:
        write_tables(args)
    except tables.TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def write_tables(args: argparse.Namespace) -> None:
    runs = args.runs or Path("runs") / args.group
    records = wandb_records(args.wandb, args.group) if args.wandb else load_records(runs)
    records = select(records, parse_selection(args.where))
    if not records:
        raise tables.TableError(f"no run matches --where {args.where}")
    keys = args.by.split(",") if args.by else tables.swept_keys(records)
    tables.check_keys(records, keys)
    present = [m for m in DEFAULT_METRICS if any(m in r.get("summary", {}) for r in records)]
    metrics = parse_metrics(args.metrics or ",".join(present))
    if not metrics:
        raise tables.TableError("none of the default metrics is in the runs' summaries: pass --metrics")
    tables.check_metrics(records, metrics)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    sweep_files = [Path(f) if Path(f).exists() else SWEEPS / f for f in (args.sweeps or "").split(",") if f]
    missing = [str(f) for f in sweep_files if not f.exists()]
    if missing:
        raise tables.TableError(f"no sweep file {', '.join(missing)}")
    order = study_order(sweep_files, keys)
    table = tables.build_table(records, keys, metrics, parse_selection(args.baseline), seeds, order)
    table.params = bool(args.params) and not args.metrics_only
    table.deltas = not (args.no_deltas or args.metrics_only)
    table.counts = not args.metrics_only
    if args.labels:
        table.names.update(read_labels(args.labels))
    name = args.name or args.study or args.group or runs.name
    out = args.out or runs / "tables"
    out.mkdir(parents=True, exist_ok=True)
    caption = args.caption or f"Ablation: {', '.join(map(table.names.column, keys))}"
    paths = [out / f"{name}.{ext}" for ext in ("tex", "md", "csv", "png", "pdf")]
    replaced = [p for p in paths if p.exists()]
    paths[0].write_text(table_formats.to_latex(table, caption, name, args.digits, args.latex_width))
    markdown = table_formats.to_markdown(table, args.digits)
    markdown += "\n" + table_formats.power_markdown(table, args.digits) if args.power else ""
    paths[1].write_text(markdown)
    with open(paths[2], "w", newline="") as f:
        csv.writer(f).writerows(table_formats.to_csv(table))
    bar_chart(table, paths[3])
    print(markdown)
    print(f"wrote {', '.join(map(str, paths))}" + (f" (replacing {len(replaced)} earlier files)" if replaced else ""))


if __name__ == "__main__":
    sys.exit(main())
