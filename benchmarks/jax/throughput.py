"""Training throughput of each fusion type in jax on this machine, next to torch's in the same run.

    python benchmarks/jax/throughput.py [--steps 10] [--batch 32] [--bf16] [--no-torch] [--fusions early ...]
                                        [--model default|large] [--variants cross_attn] [--json FILE]

For every fusion module it builds the default model (face_cnn + voice_ecapa + text_tiny at dim 64; with
`--model large` the published backbones at their real sizes, cross-attention fusion by default: iresnet50 on
112 x 112 faces, ecapa_c512 on 2 s voices at 16 kHz through the fbank80 front end, text_hf (MiniLM), dim 256,
4 heads, 2 fusion layers; benchmarks/throughput_table.py MODELS),
compiles the trainer's jitted step (research/jax/trainer.py: forward, loss, gradient, clipping, AdamW)
and times it on real batches of the embedded dataset, each step alone (the median, and the fastest and slowest
step, of `--steps` steps after WARMUP_STEPS = 8 warm-up steps, timed as the trainer runs them: with the
setup out of the garbage collector's full passes, research/training.py setup_frozen). It prints the table of
benchmarks/torch/throughput.py (FLOPs from XLA's cost analysis of the step, which counts every operation,
where torch's counter counts matmuls and convolutions only). Right after each fusion's jax steps it runs
benchmarks/torch/throughput.py on that fusion in a subprocess with the same arguments, so that the two sides
of each ratio are measured within seconds of each other (on a shared machine the speed drifts over minutes),
then prints torch's table and the jax/torch step-time ratio per fusion type, with the compile time of each
jax step apart. On a GPU or TPU the table adds the MFU (XLA's FLOP/s over the
chip's dense bf16 peak from benchmarks/throughput_table.py's table, meant for `--bf16`) and the peak device
memory (memory_stats()["peak_bytes_in_use"]: the process's peak so far, so the largest of the fusions timed up
to that line), and torch runs on the GPU (`--device cuda`) while this process holds its memory: jax's default
preallocation leaves torch a quarter of the card (benchmarks/gpu.py runs the two apart). `--json FILE` writes
the measurements as benchmarks/torch/throughput.py does ({"fusions": {fusion: {"jit": ...}}, ...}).

`--variants FUSION` also times the same train step written three ways on that fusion's model (same
batches, same optimizer): plain `nnx.jit` over (model, nnx.Optimizer) as Flax's guide writes it, the
same function through `nnx.cached_partial`, and the trainer's `nnx.split` + `jax.jit` with donation.
For each it prints the step time (the loss read every step, as the trainer does), the time the call
takes to return (Python and dispatch: XLA runs the step asynchronously, so this is the per-step
overhead that nnx.jit's graph walk adds to), and the compiled computation alone (the trainer's compiled
executable, blocked on).
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
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.throughput_table import (  # noqa: E402
    MODELS,
    WARMUP_STEPS,
    bf16_peak,
    config,
    header,
    row,
    spread,
    step_times,
)
from research.data.loader import load  # noqa: E402
from research.huge_pages import use_huge_pages  # noqa: E402
from research.jax import trainer  # noqa: E402
from research.jax.distributed import make_mesh  # noqa: E402
from research.jax.model import build_model  # noqa: E402
from research.jax.predict import replicate, to_device  # noqa: E402
from research.training import setup_frozen  # noqa: E402

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


def setup(fusion: str, args):
    """(config, batches on the mesh, the model `args.model` with this fusion, optimizer, mesh)."""
    cfg = config(args.model, fusion, args.batch, args.bf16)
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=nnx.Rngs(0))
    tx = trainer.make_optimizer(trainer.warmup_cosine(cfg.optim.lr, 10, 1000), cfg)
    mesh = make_mesh()
    batches = splits.train.batches(args.batch, shuffle=True, seed=0, epoch=1, train=True)
    batches = [to_device(b, mesh) for b in itertools.islice(batches, len(splits.train) // args.batch)]
    return cfg, batches, model, tx, mesh


def measure(fusion: str, args) -> dict[str, float]:
    cfg, batches, model, tx, mesh = setup(fusion, args)
    schedule = trainer.warmup_cosine(cfg.optim.lr, 10, 1000)
    graphdef, rngs, state = trainer.train_state(model, tx)
    step = trainer.make_train_step(graphdef, rngs, tx, schedule, cfg, mesh)
    state = replicate(state, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batches[0], 0).compile()
    compile_s = time.perf_counter() - start
    flops = compiled.cost_analysis()["flops"]
    seconds = []
    with setup_frozen():
        for i in range(WARMUP_STEPS + args.steps):
            start = time.perf_counter()
            state, measured = compiled(state, batches[i % len(batches)], i)
            float(measured["loss"])  # the trainer reads the loss every step
            seconds.append(time.perf_counter() - start)
    speed = step_times(seconds[WARMUP_STEPS:])
    speed |= {"samples/s": 1e3 * args.batch / speed["step_ms"], "flop/s": 1e3 * flops / speed["step_ms"]}
    device = jax.devices()[0]
    if device.platform != "cpu":
        speed["peak_bytes"] = device.memory_stats()["peak_bytes_in_use"]
    return speed | {"compile_s": compile_s}


def guide_step(model: nnx.Module, optimizer: nnx.Optimizer, batch: dict[str, jax.Array], step: jax.Array):
    """The trainer's step as Flax's guide writes it, on NNX objects: reseed, loss, gradient, update."""
    k_dropout, k_augment = jax.random.split(jax.random.fold_in(jax.random.key(0), step))
    nnx.reseed(model, dropout=k_dropout, augment=k_augment)
    loss, grads = nnx.value_and_grad(lambda m: m(batch)["loss"])(model)
    optimizer.update(model, grads)
    return {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def step_variants(fusion: str, args) -> dict[str, dict[str, float]]:
    """{variant: {step_ms, call_ms, compile_s}} and {"compiled": {step_ms}}; each variant on its own copy
    of the same model, on the same batches."""
    cfg, batches, model, tx, mesh = setup(fusion, args)
    model.train()
    guide_model = nnx.clone(model)
    nnx.update(guide_model, jax.tree.map(jnp.copy, nnx.state(guide_model)))  # own buffers: its steps donate them
    optimizer = nnx.Optimizer(guide_model, tx, wrt=nnx.Param)
    plain = nnx.jit(guide_step, donate_argnums=(0, 1))
    with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
        cached = nnx.cached_partial(nnx.jit(guide_step, donate_argnums=(0, 1)), guide_model, optimizer)
    graphdef, rngs, state = trainer.train_state(model, tx)
    ours = trainer.make_train_step(graphdef, rngs, tx, trainer.warmup_cosine(cfg.optim.lr, 10, 1000), cfg, mesh)
    state = [replicate(state, mesh)]
    calls = {
        "nnx.jit": lambda b, i: plain(guide_model, optimizer, b, i),
        "nnx.cached_partial": lambda b, i: cached(b, i),
        "split + jax.jit": lambda b, i: ours_call(ours, state, b, i),
    }
    results = {name: time_calls(call, batches, args.steps) for name, call in calls.items()}
    seconds = []
    for i in range(args.steps):  # already compiled
        fresh = jax.block_until_ready(jax.tree.map(jnp.copy, state[0]))  # the step consumes (donation) its input
        start = time.perf_counter()
        jax.block_until_ready(ours(fresh, batches[i % len(batches)], i))
        seconds.append(time.perf_counter() - start)
    return results | {"compiled computation": {"step_ms": 1e3 * float(np.median(seconds))}}


def ours_call(step, state: list, batch, i):
    """The trainer's call: the donated state is replaced by the step's output."""
    state[0], measured = step(state[0], batch, i)
    return measured


def time_calls(call, batches: list, steps: int) -> dict[str, float]:
    """First call (trace + compile) time, then per step: the time until the call returns, and until its
    loss is read (the step time); medians over `steps` steps after two warm-up steps."""
    start = time.perf_counter()
    float(call(batches[0], 0)["loss"])
    first_s = time.perf_counter() - start
    float(call(batches[1 % len(batches)], 1)["loss"])
    returned, read = [], []
    for i in range(2, 2 + steps):
        start = time.perf_counter()
        measured = call(batches[i % len(batches)], i)
        returned.append(time.perf_counter() - start)
        float(measured["loss"])
        read.append(time.perf_counter() - start)
    return {"step_ms": 1e3 * float(np.median(read)), "call_ms": 1e3 * float(np.median(returned)), "first_s": first_s}


def torch_result(fusion: str, args) -> tuple[dict[str, float], float]:
    """benchmarks/torch/throughput.py on `fusion` with the same arguments, in a subprocess: (its eager
    measurements, its fp32 matmul FLOP/s). Its output is not shown; its table is printed from them."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "torch.json"
        command = [sys.executable, str(Path(__file__).parents[1] / "torch" / "throughput.py"), "--json", str(out)]
        command += ["--steps", str(args.steps), "--batch", str(args.batch), "--model", args.model]
        command += ["--fusions", fusion, "--device", "cuda" if jax.default_backend() == "gpu" else "cpu"]
        command += ["--bf16"] if args.bf16 else []
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        measured = json.loads(out.read_text())
        return measured["fusions"][fusion]["eager"], measured["peak_flop/s"]  # {fusion: {"eager", "compiled"}}


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch run and the ratios")
    parser.add_argument(
        "--model", default="default", choices=MODELS, help="large: the published backbones; tiny: for smoke tests"
    )
    parser.add_argument("--fusions", nargs="*", choices=FUSIONS, help="none: only --variants; default: every "
                        "fusion for the default model, cross_attn for large")  # fmt: skip
    parser.add_argument("--variants", metavar="FUSION", choices=FUSIONS, help="nnx.jit vs the fast paths on it")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.fusions is None:
        args.fusions = list(FUSIONS) if args.model == "default" else ["cross_attn"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    peak = matmul_flops()
    device = jax.devices()[0]
    card_peak = bf16_peak(device.device_kind)
    print(f"jax {jax.__version__}, devices {jax.devices()}, model {args.model}, batch {args.batch}, bf16 {args.bf16}")
    bf16 = f", dense bf16 peak {card_peak / 1e12:.0f} TFLOP/s" if card_peak else ""
    print(f"fp32 matmul 2048^3: {peak / 1e9:.1f} GFLOP/s{bf16}\n")
    print(header(device.platform != "cpu"))
    results, theirs = {}, {}
    for fusion in args.fusions:
        results[fusion] = measure(fusion, args)
        print(row(fusion, results[fusion], peak, card_peak), flush=True)
        if not args.no_torch:
            theirs[fusion] = torch_result(fusion, args)
    if args.json:
        summary = {"peak_flop/s": peak, "device": device.device_kind, "bf16_peak_flop/s": card_peak}
        fusions = {fusion: {"jit": result} for fusion, result in results.items()}
        args.json.write_text(json.dumps(summary | {"model": args.model, "fusions": fusions}, indent=1))
    if args.variants:
        print(f"\nthe train step three ways ({args.variants}; medians of {args.steps} steps):")
        print(f"{'step':<21} {'step ms':>8} {'returns after ms':>17} {'overhead ms':>12} {'first call s':>13}")
        variants = step_variants(args.variants, args)
        computation = variants.pop("compiled computation")["step_ms"]
        for name, r in variants.items():
            overhead = r["step_ms"] - computation
            print(f"{name:<21} {r['step_ms']:>8.1f} {r['call_ms']:>17.1f} {overhead:>12.1f} {r['first_s']:>13.1f}")
        print(f"{'compiled computation':<21} {computation:>8.1f}   (the split + jax.jit step, blocked on)")
    if not theirs:
        return
    print(f"\ntorch (benchmarks/torch/throughput.py on each fusion after jax's, {jax.default_backend()}):")
    print(header(device.platform != "cpu"))
    for fusion, (torch, torch_peak) in theirs.items():
        print(row(fusion, torch, torch_peak, card_peak))
    print(f"\nstep ms: median (fastest-slowest) of {args.steps} steps")
    print(f"{'fusion':<11} {'jax ms':>20} {'torch ms':>20} {'jax/torch':>10} {'jax compile s':>14}")
    for fusion, (torch, _) in theirs.items():
        ours, compile_s = results[fusion], results[fusion]["compile_s"]
        ratio = ours["step_ms"] / torch["step_ms"]
        print(f"{fusion:<11} {spread(ours):>20} {spread(torch):>20} {ratio:>10.2f} {compile_s:>14.1f}")


if __name__ == "__main__":
    use_huge_pages()
    main()
