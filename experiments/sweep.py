"""Run W&B sweep files offline: the same YAML that `wandb sweep FILE && wandb agent ID` runs online.

    python experiments/sweep.py experiments/sweeps/loss.yaml --workers 2
    python experiments/sweep.py experiments/sweeps/unimodal.yaml experiments/sweeps/fusion_modality.yaml

Grid, random and bayes search (Optuna); trials in runs/<group>/study.db, runs in runs/<group>/<name>/.
Rerunning the same command skips finished trials and retries killed ones (docs/sweeps.md). The exit
status is 1 when a trial failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for research.sweeps

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from research.sweeps import SweepError, group, load_sweep, run_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="W&B sweep files, run one after the other")
    parser.add_argument("--workers", type=int, default=1, help="runs at the same time")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="studies go to OUT/<group>/")
    parser.add_argument("--wandb", choices=("offline", "disabled"), default="offline", help="W&B mode of each run")
    parser.add_argument("--count", type=int, help="random / bayes: number of trials (default: run_cap)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random / TPE sampler")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner prints one line per run instead
    try:
        sweeps = [load_sweep(path) for path in args.files]
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = {}  # run name -> why its last attempt failed
    for sweep in sweeps:
        trials = run_study(sweep, args.out, args.workers, args.wandb, args.count, args.seed).get_trials()
        done = {t.user_attrs["name"] for t in trials if t.state == TrialState.COMPLETE}
        for t in trials:
            if t.state == TrialState.FAIL and t.user_attrs.get("name") not in done:
                failed[t.user_attrs.get("name")] = t.user_attrs.get("reason", "killed")
        print(f"{sweep['name']}: {len(done)} finished run(s) in {args.out / group(sweep)}")
    for name, reason in failed.items():
        print(f"failed: {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
