"""Evaluate a finished run's best checkpoint again, with every protocol of the end-of-run report.

    python experiments/evaluate.py --run runs/NAME [--out DIR] [--device cpu]

The model is rebuilt from the run record's resolved config, so nothing but the run directory is needed;
metrics, trial lists and plots go to DIR (default: runs/NAME/reeval). It prints the headline metrics of val
and test (HEADLINE) and of the test-time modality ablation; every other figure (each fairness subgroup, the
retrieval and matching details) is in DIR/summary.json and DIR/{val,test}/metrics.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research.report import evaluate_checkpoint  # noqa: E402

HEADLINE = ("acc", "macro_f1", "subject_acc", "eer", "min_dcf_0.01", "pair_acc", "crossmodal/eer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory holding record.json")
    parser.add_argument("--out", type=Path, help="where to write the evaluation (default RUN/reeval)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    record_path = args.run / "record.json"
    if not record_path.exists() or not (args.run / "best.safetensors").exists():
        print(f"error: {args.run} holds no record.json and best.safetensors of a finished run", file=sys.stderr)
        return 2
    out = args.out or args.run / "reeval"
    print("\n".join(summary_lines(evaluate_checkpoint(args.run, out, args.device), out)))
    return 0


def summary_lines(summary: dict[str, float], out: Path) -> list[str]:
    """The headline metrics of val, test and test without each modality, one a line, then where the rest is."""
    ablated = sorted({k.split("/")[1] for k in summary if k.startswith("test/without_")})
    splits = ["val", "test", *(f"test/{a}" for a in ablated)]
    shown = {f"{s}/{n}": summary[f"{s}/{n}"] for s in splits for n in HEADLINE if f"{s}/{n}" in summary}
    width = max(map(len, shown), default=0)
    lines = [f"  {key:<{width}}  {value:.4f}" for key, value in shown.items()]
    files = f"{out / 'summary.json'} and {out}/{{val,test}}/metrics.json"
    return lines + [f"  {len(summary) - len(shown)} more figures (each fairness subgroup, retrieval, ...) in {files}"]


if __name__ == "__main__":
    sys.exit(main())
