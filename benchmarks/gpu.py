"""Training throughput of both backends on one GPU in bf16, for the default and the large model.

    python benchmarks/gpu.py [--steps 20] [--batch 0]

For each model (benchmarks/throughput_table.py MODELS: `default`, and `large`, the published backbones at their
real sizes) it runs benchmarks/torch/throughput.py (`--device cuda --bf16`) and benchmarks/jax/throughput.py
(`--bf16 --no-torch`) in subprocesses, one after the other so that neither holds GPU memory while the other
runs, on cross-attention fusion at a realistic batch (BATCH: 128, one whole batch of the embedded dataset's
240 training samples, which every step reuses), and prints each backend's samples/s, step time, MFU against
the card's dense bf16 peak (the table in benchmarks/throughput_table.py), peak GPU memory, and the jax/torch
step-time ratio. The FLOPs are each framework's own count (torch: matmuls and convolutions; XLA: every
operation), so the two MFUs differ by that too; the step times compare directly.
Framework-free: it imports neither torch nor jax, and asks each in a subprocess whether it sees a GPU. On a
machine without one it says so in one line and exits 0. CUDA jaxlib: docs/scaling.md ("One GPU: throughput").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = {"default": 128, "large": 128}
FUSION = "cross_attn"


def probe(code: str) -> str:
    """What `python -c code` prints, or "" when it fails (e.g. the framework is not installed)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return done.stdout.strip() if done.returncode == 0 else ""


def run(backend: str, model: str, args, folder: Path) -> dict[str, float]:
    """One backend's throughput script on `model`; its JSON's result for the fusion."""
    out = folder / f"{backend}-{model}.json"
    batch = args.batch or BATCH[model]
    command = [sys.executable, str(ROOT / "benchmarks" / backend / "throughput.py"), "--bf16", "--model", model]
    command += ["--fusions", FUSION, "--steps", str(args.steps), "--batch", str(batch), "--json", str(out)]
    command += ["--device", "cuda"] if backend == "torch" else ["--no-torch"]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    measured = result["fusions"][FUSION]["eager" if backend == "torch" else "jit"]
    return measured | {"batch": batch, "device": result["device"], "card_peak": result["bf16_peak_flop/s"]}


def summary(results: dict[tuple[str, str], dict[str, float]]) -> None:
    print(f"\n{'model':<8} {'backend':<7} {'batch':>5} {'samples/s':>10} {'step ms':>9} {'MFU bf16':>9} {'peak GB':>8}")
    for (model, backend), r in results.items():
        mfu = f"{r['flop/s'] / r['card_peak']:>9.1%}" if r["card_peak"] else f"{'?':>9}"
        print(
            f"{model:<8} {backend:<7} {r['batch']:>5} {r['samples/s']:>10.1f} {r['step_ms']:>9.1f} {mfu} "
            f"{r['peak_bytes'] / 1e9:>8.2f}"
        )
    for model in dict.fromkeys(model for model, _ in results):
        if (model, "jax") in results and (model, "torch") in results:
            ratio = results[model, "jax"]["step_ms"] / results[model, "torch"]["step_ms"]
            print(f"{model}: jax/torch step time {ratio:.2f}")
    devices = {r["device"] for r in results.values()}
    print(f"GPU {', '.join(sorted(devices))}; MFU = counted FLOP/s / dense bf16 peak ('?': card not in the table)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=0, help="0: BATCH's for each model")
    args = parser.parse_args()
    if probe("import torch; print(torch.cuda.is_available())") != "True":
        print("benchmarks/gpu.py: no GPU here (torch.cuda.is_available() is False); nothing measured")
        return 0
    backends = ["torch"]
    platform = probe("import jax; print(jax.default_backend())")
    if platform == "gpu":
        backends.append("jax")
    else:
        print(f'jax runs on "{platform or "nothing"}", not the GPU: install CUDA jaxlib (docs/scaling.md); torch only')
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for model in BATCH:
            for backend in backends:
                results[model, backend] = run(backend, model, args, Path(folder))
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
