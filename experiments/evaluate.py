"""Evaluate a finished run's best checkpoint again, with every protocol of the end-of-run report.

    python experiments/evaluate.py --run runs/NAME [--out DIR] [--device cpu]

The model is rebuilt from the run record's resolved config, so nothing but the run directory is needed;
metrics, trial lists and plots go to DIR (default: runs/NAME/reeval) and the summary is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research.report import evaluate_checkpoint  # noqa: E402


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
    summary = evaluate_checkpoint(args.run, args.out or args.run / "reeval", args.device)
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
