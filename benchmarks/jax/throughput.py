"""Training throughput of each fusion type in jax on this machine, next to torch's in the same run.

    python benchmarks/jax/throughput.py [--steps 10] [--batch 32] [--bf16] [--no-torch]

For every fusion module it builds the default model (face_cnn + voice_ecapa + text_tiny at dim 64),
compiles the trainer's jitted step (research/jax/trainer.py: forward, loss, gradient, clipping, AdamW)
and times it on real batches of the embedded dataset, after two warm-up steps. It prints the table of
benchmarks/torch/throughput.py (FLOPs from XLA's cost analysis of the step, which counts every operation,
where torch's counter counts matmuls and convolutions only), then runs benchmarks/torch/throughput.py
in a subprocess with the same arguments and prints the jax/torch step-time ratio per fusion type and the
compile time of each jax step, separately.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.throughput_table import HEADER, row  # noqa: E402
from research.config import Config  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.jax import trainer  # noqa: E402
from research.jax.model import build_model  # noqa: E402
from research.jax.predict import make_mesh, replicate, to_device  # noqa: E402

FUSIONS = ("early", "stack", "cross_attn", "late", "gated")


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n fp32 matmul (2 n^3 FLOPs each), best of `repeats`."""
    a, b = jnp.ones((n, n)), jnp.ones((n, n))
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def measure(fusion: str, args) -> dict[str, float]:
    cfg = Config()
    cfg.model.fusion = fusion
    cfg.data.batch_size = args.batch
    cfg.optim.bf16 = args.bf16
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=nnx.Rngs(0))
    schedule = trainer.warmup_cosine(cfg.optim.lr, 10, 1000)
    tx = trainer.make_optimizer(cfg, schedule)
    mesh = make_mesh()
    graphdef, rngs, state = trainer.train_state(model, tx)
    step = trainer.make_train_step(graphdef, rngs, tx, schedule, cfg, mesh)
    batches = splits.train.batches(args.batch, shuffle=True, seed=0, epoch=1, train=True)
    batches = [to_device(b, mesh) for b in itertools.islice(batches, len(splits.train) // args.batch)]
    state = replicate(state, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batches[0], 0).compile()
    compile_s = time.perf_counter() - start
    flops = compiled.cost_analysis()["flops"]
    for i in range(2):  # warm-up
        state, measured = compiled(state, batches[i % len(batches)], i)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(args.steps):
        state, measured = compiled(state, batches[i % len(batches)], i)
        float(measured["loss"])  # the trainer reads the loss every step
    seconds = (time.perf_counter() - start) / args.steps
    speed = {"samples/s": args.batch / seconds, "step_ms": 1e3 * seconds, "flop/s": flops / seconds}
    return speed | {"compile_s": compile_s}


def torch_results(args) -> dict[str, dict[str, float]]:
    """benchmarks/torch/throughput.py with the same arguments, in a subprocess (its own table is shown)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "torch.json"
        command = [sys.executable, str(Path(__file__).parents[1] / "torch" / "throughput.py"), "--json", str(out)]
        command += ["--steps", str(args.steps), "--batch", str(args.batch), "--device", "cpu"]
        command += ["--bf16"] if args.bf16 else []
        subprocess.run(command, check=True)
        return json.loads(out.read_text())["fusions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch run and the ratios")
    args = parser.parse_args()
    peak = matmul_flops()
    print(f"jax {jax.__version__}, devices {jax.devices()}, batch {args.batch}, bf16 {args.bf16}")
    print(f"fp32 matmul 2048^3: {peak / 1e9:.1f} GFLOP/s\n")
    print(HEADER)
    results = {}
    for fusion in FUSIONS:
        results[fusion] = measure(fusion, args)
        print(row(fusion, results[fusion], peak))
    if args.no_torch:
        return
    print("\ntorch (benchmarks/torch/throughput.py, same arguments, CPU):")
    theirs = torch_results(args)
    print(f"\n{'fusion':<11} {'jax ms':>8} {'torch ms':>9} {'jax/torch':>10} {'jax compile s':>14}")
    for fusion in FUSIONS:
        jax_ms, compile_s = results[fusion]["step_ms"], results[fusion]["compile_s"]
        torch_ms = theirs[fusion]["step_ms"]
        print(f"{fusion:<11} {jax_ms:>8.1f} {torch_ms:>9.1f} {jax_ms / torch_ms:>10.2f} {compile_s:>14.1f}")


if __name__ == "__main__":
    main()
