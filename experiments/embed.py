"""Embed files or a manifest's rows with a trained run's best checkpoint, into a safetensors file for score.py.

    python experiments/embed.py --run runs/NAME --input DIR|MANIFEST --out FILE.safetensors
        [--split test] [--modality face|voice|text] [--window SECONDS --hop SECONDS] [--backend torch|jax]
        [--device cpu] [--no-progress] [--subject-means FILE.safetensors]

DIR: every audio, image and text file under it (recursively), each keyed by its path relative to DIR
(`id10270/x6uYqmx31kE/00001.wav`, as trial lists name them). MANIFEST (.csv / .jsonl): every row, or those of one
`--split` (of the run's data.split, closed or open), keyed by its id. The output holds one (E,) float32 tensor per
key. The embedding is the run's verification embedding of the input; `--modality` keeps one modality's
(docs/evaluation.md, "Embedding files"). Voices are embedded whole, or with `--window` cut into windows every
`--hop` seconds (default: the window) whose unit embeddings are averaged. The run's backend embeds, or `--backend`
(the weights converted under torch's names, research/restore.py). `--subject-means FILE` (a manifest only) also
writes one mean embedding per subject, keyed by subject: the AS-norm cohort of WeSpeaker's tools/vector_mean.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research import embedding  # noqa: E402
from research.config import MODALITIES  # noqa: E402
from research.data.manifest import DataError  # noqa: E402
from research.restore import restore  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory holding record.json")
    parser.add_argument("--input", required=True, type=Path, help="a folder of files, or a manifest (.csv, .jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="the safetensors file to write")
    parser.add_argument("--split", help="a manifest's rows of this split only (train, val, test)")
    parser.add_argument("--modality", choices=MODALITIES, help="one modality's embedding (default: the fused one)")
    parser.add_argument("--window", type=float, default=0.0, help="seconds per voice window (default: whole)")
    parser.add_argument("--hop", type=float, default=0.0, help="seconds between windows (default: the window)")
    parser.add_argument("--backend", choices=("torch", "jax"), help="embed in this backend (default: the run's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--subject-means", type=Path, help="manifest input: also one mean embedding per subject here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    problem = check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        run = restore(args.run, args.device, decoded=False, backend=args.backend)
        if args.input.is_dir():
            folder, rows = args.input, embedding.folder_rows(args.input)
        else:
            folder, rows = args.input.parent, embedding.manifest_rows(args.input, args.split, run.cfg.data.split)
        samples = embedding.decode(folder, rows, run.cfg, progress=not args.no_progress)
        how = {"modality": args.modality, "window": args.window, "hop": args.hop, "progress": not args.no_progress}
        how["folder"] = folder  # video faces: data.face_frames frames each
        found = embedding.embed(run.backend, run.model, run.cfg, run.device, samples, **how)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(found, str(args.out), metadata={"run": str(args.run), "modality": args.modality or "fused"})
    size = next(iter(found.values())).shape[0]
    print(f"{len(found)} embeddings of {size} dimensions -> {args.out}")
    if args.subject_means:
        means = embedding.subject_means(found, rows)
        save_file(means, str(args.subject_means), metadata={"run": str(args.run), "means_of": str(args.out)})
        print(f"{len(means)} subject means -> {args.subject_means}")
    return 0


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments before anything loads, or None."""
    if not (args.run / "record.json").exists() or not (args.run / "best.safetensors").exists():
        return f"{args.run} holds no record.json and best.safetensors of a finished run"
    if not args.input.exists():
        return f"--input {args.input} does not exist"
    if (args.split or args.subject_means) and args.input.is_dir():
        return "--split and --subject-means need a manifest's rows, not files of a folder"
    if args.window < 0 or args.hop < 0 or (args.hop and not args.window):
        return "--window and --hop are positive seconds, and --hop needs --window"
    return None


if __name__ == "__main__":
    sys.exit(main())
