"""Export a trained run's embedding model to a file that ONNX Runtime, torch or jax runs without this code.

    python experiments/export.py --run runs/NAME --format onnx|pt2|stablehlo --out FILE
        [--modality face|voice|text]

onnx and pt2 (torch.export's program) trace the torch model, stablehlo (jax.export) the jax model; a run of the
other backend is converted (research/restore.py). The file computes the embedding experiments/embed.py writes:
of one `--modality`, or without it the fused embedding of samples with all of the run's modalities. Inputs: a
face (B, 3, H, W) float32 RGB in [0, 1] at the run's image size; a voice (B, S) float32 waveform at the run's
sample rate with its valid samples (B,) int64 (int32 in stablehlo), front end included; text token ids and mask
(B, L). The batch B and the voice length S are dynamic. FILE.json, written beside it, lists the inputs and sizes
(docs/evaluation.md, "Export", has each runtime's client code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research import export  # noqa: E402
from research.config import MODALITIES  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory holding record.json")
    parser.add_argument("--format", required=True, choices=sorted(export.FORMATS), help="the file's format")
    parser.add_argument("--out", required=True, type=Path, help="the file to write (its sidecar: FILE.json)")
    parser.add_argument("--modality", choices=MODALITIES, help="one modality's embedding (default: the fused one)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    problem = export.problem(args.run, args.format, args.modality)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from research.restore import restore  # imports Grain and jax: after the argument checks

    run = restore(args.run, "cpu", decoded=False, backend=export.FORMATS[args.format].backend)
    meta = export.export(run, args.run, args.format, args.modality, args.out)
    names = ", ".join(f"{x['name']} {x['shape']}" for x in meta["inputs"])
    print(f"{args.out}: {names} -> embeddings {meta['output']['shape']}; its inputs in {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
