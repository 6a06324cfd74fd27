"""Files per second of `prepare` (probe headers, build the manifest) and `check` (decode every file) for each
fixture format, with 1 and 2 worker processes.

    python benchmarks/prepare.py              # --scale 20: 400 WAV, 240 M4A, 240 JPEG, 300 FLAC, 60 MP4 files
    python benchmarks/prepare.py --scale 5
    python benchmarks/prepare.py --scale 1 --formats wav --workers 1     # the smallest run (the CI smoke test)

The fixtures are the tests' tiny datasets in their real layouts (tests/data/layouts.py), `scale` times more
files per identity: 0.3 s 16 kHz voices (every third VoxCeleb2 file 44.1 kHz stereo), 48 x 40 JPEG faces,
2 s 32 x 32 H.264 + AAC clips. Times include starting the worker processes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.prepare import prepare  # noqa: E402
from research.data.check import check  # noqa: E402
from research.data.datasets.common import Options  # noqa: E402
from tests.data import layouts  # noqa: E402

FORMATS = [  # (file suffix, layout writer, adapter)
    ("wav", "voxceleb1", "voxceleb1"),
    ("m4a", "voxceleb2", "voxceleb2"),
    ("jpg", "vggface2", "vggface2"),
    ("flac", "librispeech", "librispeech"),
    ("mp4", "firstimpressions", "firstimpressions"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--formats", default=",".join(f[0] for f in FORMATS), help="file suffixes to time")
    parser.add_argument("--workers", default="1,2", help="worker process counts to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'format':<6} {'files':>6} {'workers':>7} {'prepare files/s':>16} {'check files/s':>14} {'samples':>8}")
        for suffix, writer, name in [f for f in FORMATS if f[0] in args.formats.split(",")]:
            root = Path(tmp) / writer
            getattr(layouts, writer)(root, scale=args.scale)
            files = len(list(root.rglob(f"*.{suffix}")))
            for workers in map(int, args.workers.split(",")):
                out = Path(tmp) / f"{name}-{workers}.csv"
                start = time.perf_counter()
                rows = prepare(name, root, Options(out, workers=workers, progress=False, fps=1.0)).rows
                prepared = time.perf_counter() - start
                start = time.perf_counter()
                report = check(out, workers=workers, progress=False)
                checked = time.perf_counter() - start
                assert not report.problems, report.problems[:3]
                rates = f"{files / prepared:>16.0f} {files / checked:>14.0f}"
                print(f"{suffix:<6} {files:>6} {workers:>7} {rates} {len(rows):>8}")


if __name__ == "__main__":
    main()
