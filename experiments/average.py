"""Average checkpoints offline, as the trainers do with eval.average_last (research/averaging.py): every floating
array is the mean of the files' (BatchNorm statistics included), integers are the last file's.

    python experiments/average.py --run runs/NAME --last 5     # RUN/epoch_*.safetensors -> RUN/averaged.safetensors
    python experiments/average.py --checkpoints A B C --out F.safetensors

A run's epoch files exist when it trained with --eval.average_last=k (the last k of them) and run.keep=all; a
later run with --model.init_model=RUN starts from RUN/averaged.safetensors when it is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research.averaging import average, epoch_files  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a run directory holding epoch_N.safetensors files")
    parser.add_argument("--last", type=int, default=0, help="with --run: average the last k epochs (0: all there)")
    parser.add_argument("--checkpoints", type=Path, nargs="+", help="checkpoint files to average, in order")
    parser.add_argument("--out", type=Path, help="the averaged file (with --run: RUN/averaged.safetensors)")
    args = parser.parse_args(argv)
    if (args.run is None) == (args.checkpoints is None):
        parser.error("give --run RUN [--last k] or --checkpoints A B ... --out F")
    if args.run is not None:
        epochs = list(epoch_files(args.run).items())
        epochs = epochs[-args.last :] if args.last > 0 else epochs
        if not epochs:
            parser.error(f"{args.run} holds no epoch_N.safetensors (train with --eval.average_last=k)")
        paths, out = [p for _, p in epochs], args.out or args.run / "averaged.safetensors"
        meta = {"epochs": [e for e, _ in epochs]}
    else:
        if args.out is None:
            parser.error("--checkpoints needs --out")
        paths, out, meta = args.checkpoints, args.out, {}
    try:
        average(paths, out, meta)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: the mean of {len(paths)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
