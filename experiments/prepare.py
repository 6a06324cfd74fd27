"""Turn a real dataset, as distributed, into a manifest; or check a manifest.

    python experiments/prepare.py voxceleb1 --root /data/VoxCeleb1 --out data/vox1.csv --workers 8
    python experiments/prepare.py voxceleb2-vggface2 --root /data/VoxCeleb2 --faces /data/VGGFace2
    python experiments/prepare.py voxceleb2 --root /data/VoxCeleb2 --faces-from-video   # faces from dev/mp4/
    python experiments/prepare.py firstimpressions --root /data/FirstImpressionsV2 --fps 2
    python experiments/prepare.py check data/vox1.csv --workers 8   # writes data/vox1.check.json
    python experiments/prepare.py pack data/vox1.csv --out data/vox1-packed   # ArrayRecord shards

Datasets: voxceleb1, voxceleb2, vggface2, librispeech, firstimpressions, voxceleb1-vggface,
voxceleb2-vggface2, voxceleb2-voxceleb1 (--test-root VOX1); what each expects on disk: docs/data.md.
Nothing is downloaded. The manifest (and its sidecar) appear atomically once every check has passed;
`--on-error skip` drops bad files and lines and counts them instead of stopping. Then train with
`python experiments/run.py --dataset data/vox1.csv`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research.data import checked, manifest  # noqa: E402
from research.data.check import check, format_report  # noqa: E402
from research.data.datasets import ADAPTERS, adapter  # noqa: E402
from research.data.datasets.common import Options, Prepared  # noqa: E402
from research.data.manifest import DataError  # noqa: E402


def prepare(name: str, root: str | Path, opts: Options) -> Prepared:
    """Run adapter `name` on `root` and write opts.out (and its sidecar) atomically."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    prepared = adapter(name)(root, opts)
    manifest.write(opts.out, prepared.rows, prepared.meta, prepared.numeric)
    return prepared


def main(argv: list[str]) -> int:
    if argv[:1] == ["pack"]:
        return pack_main(argv[1:])
    if argv[:1] == ["check"]:
        parser = argparse.ArgumentParser(prog="prepare.py check", description="validate a manifest and report on it")
        parser.add_argument("manifest", type=Path)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--image-size", type=int, default=32)
        parser.add_argument("--sample-rate", type=int, default=16000)
        args = parser.parse_args(argv[1:])
        try:
            report = check(
                args.manifest, workers=args.workers, image_size=args.image_size, sample_rate=args.sample_rate
            )
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_report(report))
        saved = checked.save(args.manifest, args.image_size, args.sample_rate, report.unreadable)
        print(f"wrote {saved}: a run that reads the samples while training (data.cache=false) reads it")
        return 1 if report.problems else 0
    parser = argparse.ArgumentParser(
        prog="prepare.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("name", choices=sorted(ADAPTERS))
    parser.add_argument("--root", type=Path, required=True, help="the dataset's folder, as distributed")
    parser.add_argument("--out", type=Path, help="manifest to write (.csv or .jsonl); default data/NAME.csv")
    parser.add_argument("--workers", type=int, default=1, help="processes that probe files")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="training identities held out as open val")
    parser.add_argument("--fps", type=float, default=1.0, help="firstimpressions: samples (frames) per second")
    parser.add_argument("--faces", type=Path, help="face + voice joins: the face dataset's folder")
    parser.add_argument("--test-root", type=Path, help="voxceleb2-voxceleb1: VoxCeleb1's folder")
    parser.add_argument(
        "--faces-from-video", action="store_true", help="voxceleb2: each utterance's face is its video (dev/mp4/)"
    )
    args = parser.parse_args(argv)
    out = args.out or Path("data") / f"{args.name}.csv"
    opts = Options(out, args.workers, args.on_error, args.val_fraction, args.fps, args.faces, args.test_root,
                   faces_from_video=args.faces_from_video)  # fmt: skip
    try:
        prepared = prepare(args.name, args.root, opts)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    subjects = len({r.subject for r in prepared.rows})
    print(f"wrote {out}: {len(prepared.rows)} samples of {subjects} identities")
    for reason, count in prepared.skipped.items():
        print(f"skipped {count}: {reason}")
    for message in prepared.problems:
        print(f"  e.g. {message}")
    return 0


def pack_main(argv: list[str]) -> int:
    """`prepare.py pack MANIFEST --out DIR`: decoded samples into ArrayRecord shards (research/data/pack.py)."""
    from research.data import pack

    parser = argparse.ArgumentParser(prog="prepare.py pack", description=pack.__doc__)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the shards and the packed manifest")
    parser.add_argument("--image-size", type=int, default=32, help="faces are resized to this (data.image_size)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="voices are resampled to this")
    parser.add_argument("--workers", type=int, default=0, help="processes that decode")
    parser.add_argument("--per-shard", type=int, default=10000, help="samples per shard")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    args = parser.parse_args(argv)
    try:
        target, problems = pack.write(
            args.manifest,
            args.out,
            image_size=args.image_size,
            sample_rate=args.sample_rate,
            on_error=args.on_error,
            workers=args.workers,
            per_shard=args.per_shard,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target}: train on it with --dataset {target}")
    if problems:
        print(f"skipped {len(problems)} samples with unreadable files, e.g. {problems[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
