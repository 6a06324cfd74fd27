"""Does jax reach torch's test accuracy when it starts from torch's initial weights?

    python benchmarks/jax/same_init.py [--seeds 0 1 2] [--no-noise] [run.py arguments...]

For every seed: the torch run (experiments/run.py --backend torch, in a subprocess), then the jax run of
the same config starting from the torch model's initial weights (benchmarks/torch/initial_state.py
writes them, encoders/jax/convert.py's `to_nnx` loads them into the jax model that
research/jax/trainer.py builds). The data order is the same by construction (batches of (seed, epoch));
dropout and SpecAugment masks differ by design (torch's RNG vs jax keys of (seed, step)): `--no-noise`
turns both off (model.dropout=0, model.spec_augment=false) in both backends. Prints, per seed, both test
accuracies and both per-epoch training losses (from each run's record.json).
Runs go to runs/same_init/, or to --out (a rerun of a finished run only re-evaluates it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root

from encoders.jax import convert  # noqa: E402
from experiments.run import parse  # noqa: E402
from research.jax import backend as jax_backend  # noqa: E402
from research.jax import trainer  # noqa: E402

OUT = "runs/same_init"


def torch_run(overrides: list[str], name: str) -> None:
    command = [sys.executable, str(ROOT / "experiments" / "run.py"), *overrides, "--backend", "torch"]
    subprocess.run([*command, f"--run.name={name}"], check=True, cwd=ROOT)


def torch_initial_state(overrides: list[str]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "initial.npz"
        script = ROOT / "benchmarks" / "torch" / "initial_state.py"
        subprocess.run([sys.executable, str(script), str(out), *overrides], check=True, cwd=ROOT)
        return dict(np.load(out))


def jax_run(overrides: list[str], name: str, state: dict[str, np.ndarray]) -> None:
    """research/jax/trainer.py's run, its freshly built model (research/jax/backend.py new_model) overwritten with
    `state` before training."""
    build = jax_backend.build_model

    def build_from_torch(*args, **kwargs):
        model = build(*args, **kwargs)
        convert.to_nnx(state, model)
        return model

    cfg = parse([*overrides, "--backend", "jax", f"--run.name={name}"])
    jax_backend.build_model = build_from_torch
    try:
        trainer.train_and_evaluate(cfg, ROOT / cfg.run.out / name, name)
    finally:
        jax_backend.build_model = build


def record(out: str, name: str) -> dict:
    return json.loads((ROOT / out / name / "record.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-noise", action="store_true", help="dropout 0 and no SpecAugment, in both backends")
    parser.add_argument("--out", default=OUT, help="the runs' folder (run.out)")
    args, extra = parser.parse_known_args()
    noise = ["--model.dropout=0", "--model.spec_augment=false"] if args.no_noise else []
    suffix = "-nonoise" if args.no_noise else ""
    rows = []
    for seed in args.seeds:
        overrides = [*extra, *noise, f"--seed={seed}", f"--run.out={args.out}", "--run.wandb=disabled"]
        overrides += ["--run.progress=false"]
        names = {b: f"{b}-s{seed}{suffix}" for b in ("torch", "jax")}
        torch_run(overrides, names["torch"])
        jax_run(overrides, names["jax"], torch_initial_state(overrides))
        rows.append((seed, {b: record(args.out, n) for b, n in names.items()}))
    print(f"\nsame initial weights (torch's), noise {'off' if args.no_noise else 'on'}, {' '.join(extra)}")
    for seed, records in rows:
        for backend, rec in records.items():
            losses = " ".join(f"{h['train/loss']:.3f}" for h in rec["history"])
            print(f"seed {seed} {backend:<5} test/acc {rec['summary']['test/acc']:.3f}  train/loss by epoch: {losses}")
    for backend in ("torch", "jax"):
        accs = np.array([records[backend]["summary"]["test/acc"] for _, records in rows])
        print(f"{backend:<5} test/acc mean {accs.mean():.3f} +- {accs.std(ddof=1) if len(accs) > 1 else 0:.3f}")


if __name__ == "__main__":
    main()
