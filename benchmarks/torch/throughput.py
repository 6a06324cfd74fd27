"""Training throughput of each fusion type on this machine: eager, torch.compile (run.compile) and DDP.

    python benchmarks/torch/throughput.py [--steps 10] [--batch 32] [--device cpu] [--bf16] [--json FILE]
                                          [--model default|large] [--fusions early,stack,...] [--compile]
                                          [--ddp 2] [--threads 0]

For every fusion module it builds the default model (face_cnn + voice_ecapa + text_tiny at dim 64; with
`--model large` the published backbones at their real sizes, cross-attention fusion by default: iresnet50 on
112 x 112 faces, ecapa_c512 on 2 s voices at 16 kHz through the fbank80 front end, text_hf (MiniLM), dim 256,
4 heads, 2 fusion layers; benchmarks/throughput_table.py MODELS), times full training steps (forward,
backward, AdamW; each step timed alone: the median and the fastest and slowest of `--steps` steps after
benchmarks/throughput_table.py's WARMUP_STEPS = 8 warm-up steps, with the setup out of the garbage collector's
full passes as in the trainer) on real batches of the embedded dataset, counts the
FLOPs of one step with torch's FLOP counter (matmuls and convolutions, forward and backward), and prints
samples/s, achieved GFLOP/s and the ratio to the peak-like FLOP/s of a large fp32 matmul measured in the
same run. All figures are measured; nothing is assumed about the hardware, except on a GPU: there the table
adds the MFU (the counted FLOP/s over the card's dense bf16 peak from benchmarks/throughput_table.py's table,
meant for `--bf16`) and the peak GPU memory of the fusion's run (torch.cuda.max_memory_allocated).

--compile: the same steps through torch.compile(model) (what run.compile does; inductor needs a C++
compiler on the CPU); the first step's time, which includes compiling forward and backward, is printed
apart, and the step time after the warm-up steps against eager's.
--ddp N: the same global batch on N gloo processes (this file with --rank, joined through
research/torch/distributed.py as under torchrun, DistributedDataParallel, B / N samples per rank, each
rank's shard of the epoch, the 1-process run's torch threads split between the ranks), every collective under
FUSION_DIST_TIMEOUT_S and the ranks under a wall-clock limit. Scaling efficiency = N-process samples/s
/ (N x 1-process samples/s): 1 is perfect scaling. Here it measures the CPU, not DDP: on an idle CPU
the ranks share the cores the 1-process run already uses (a ceiling of cores / (N x its threads)), and on a
CPU loaded by other jobs each process gets its own share of the time, which can lift the figure past that.
On a CPU shared with other jobs, --threads 1 (one thread per process, 1 per rank) gives comparable figures:
OpenMP threads that spin-wait for a descheduled sibling make a 2-thread process many times slower there.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.throughput_table import MODELS, WARMUP_STEPS, bf16_peak, config, header, row, step_times  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.huge_pages import use_huge_pages  # noqa: E402
from research.torch import distributed  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import to_device  # noqa: E402
from research.torch.trainer import make_optimizer  # noqa: E402
from research.training import setup_frozen  # noqa: E402

FUSIONS = ("early", "stack", "cross_attn", "late", "gated")
WALL_S = 1800  # the DDP ranks of one fusion


def matmul_flops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n fp32 matmul (2 n^3 FLOPs each), best of `repeats`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup(fusion: str, args, device: torch.device, rank: int = 0, world: int = 1):
    """The model `args.model` with `fusion`, its optimizer, and this rank's full batches (B / world samples)."""
    cfg = config(args.model, fusion, args.batch, args.bf16)
    splits = load(cfg.data)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None).to(device).train()
    optimizer = make_optimizer(model, cfg)
    size = args.batch // world
    epoch = splits.train.batches(size, shuffle=True, seed=0, epoch=1, train=True, rank=rank, world=world)
    batches = [to_device(b, device) for b in epoch if len(b["target"]) == size]
    return model, optimizer, batches


def stepper(model, optimizer, args, device: torch.device):
    def step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, batches, steps: int, device: torch.device) -> tuple[float, dict[str, float]]:
    """(seconds of the first step, step_times of `steps` steps after WARMUP_STEPS steps, the first included:
    median and spread), timed as the trainer runs them (research/training.py setup_frozen)."""
    sync(device)
    seconds = []
    with setup_frozen():
        for i in range(WARMUP_STEPS + steps):
            start = time.perf_counter()
            step(batches[i % len(batches)])
            sync(device)
            seconds.append(time.perf_counter() - start)
    return seconds[0], step_times(seconds[WARMUP_STEPS:])


def measure(fusion: str, args, device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer, batches = setup(fusion, args, device)
    step = stepper(model, optimizer, args, device)
    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    _, result = timed(step, batches, args.steps, device)
    result |= {
        "samples/s": 1e3 * args.batch / result["step_ms"],
        "flop/s": 1e3 * counter.get_total_flops() / result["step_ms"],
    }
    if device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def measure_compiled(fusion: str, args, device: torch.device) -> dict[str, float]:
    model, optimizer, batches = setup(fusion, args, device)
    first, result = timed(stepper(torch.compile(model), optimizer, args, device), batches, args.steps, device)
    return result | {"first_step_s": first, "samples/s": 1e3 * args.batch / result["step_ms"]}


def run_rank(fusion: str, args) -> dict[str, float]:
    """One DDP rank (RANK / WORLD_SIZE / MASTER_* in the environment, as torchrun sets them)."""
    world = distributed.init("cpu")
    model, optimizer, batches = setup(fusion, args, world.device, world.rank, world.size)
    trained = distributed.wrap(model, world, sync_bn=False)
    _, result = timed(stepper(trained, optimizer, args, world.device), batches, args.steps, world.device)
    distributed.close(world)
    return {"rank": world.rank, "step_ms": result["step_ms"]}


def measure_ddp(fusion: str, args) -> dict[str, float]:
    """The slowest rank's step time of `args.ddp` ranks training on the global batch."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, torch.get_num_threads() // args.ddp)
    env = os.environ | {"WORLD_SIZE": str(args.ddp), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env |= {"OMP_NUM_THREADS": str(threads), "FUSION_DIST_TIMEOUT_S": os.environ.get("FUSION_DIST_TIMEOUT_S", "600")}
    command = [sys.executable, __file__, f"--rank-of={fusion}", f"--steps={args.steps}", f"--batch={args.batch}"]
    command += [f"--model={args.model}"]
    command += ["--bf16"] if args.bf16 else []
    procs = [
        subprocess.Popen(command, env=env | {"RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, text=True)
        for r in range(args.ddp)
    ]
    end = time.monotonic() + WALL_S
    try:
        outs = [p.communicate(timeout=max(1.0, end - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise SystemExit(f"DDP {fusion}: a rank failed (exit codes {[p.returncode for p in procs]})")
    seconds = max(json.loads(o.strip().splitlines()[-1])["step_ms"] for o in outs) / 1e3
    return {"step_ms": 1e3 * seconds, "samples/s": args.batch / seconds, "threads_per_rank": threads}


def ddp_table(results: dict, fusions: list[str], args) -> None:
    """DDP's step time of each fusion next to the 1-process one, and the scaling efficiency."""
    print(f"\nDDP: global batch {args.batch} on {args.ddp} gloo processes ({args.batch // args.ddp} per rank)")
    print(f"{'fusion':<11} {'1-proc ms':>10} {f'{args.ddp}-proc ms':>10} {'samples/s':>10} {'efficiency':>11}")
    for fusion in fusions:
        eager, ddp = results[fusion]["eager"], measure_ddp(fusion, args)
        results[fusion]["ddp"] = ddp
        efficiency = ddp["samples/s"] / (args.ddp * eager["samples/s"])
        print(
            f"{fusion:<11} {eager['step_ms']:>10.1f} {ddp['step_ms']:>10.1f} {ddp['samples/s']:>10.1f} "
            f"{efficiency:>11.2f}",
            flush=True,
        )
    ceiling = min(1.0, os.cpu_count() / (args.ddp * torch.get_num_threads()))
    print(
        f"efficiency = {args.ddp}-process samples/s / ({args.ddp} x 1-process samples/s). The 1-process run uses "
        f"{torch.get_num_threads()} threads, each rank {ddp['threads_per_rank']}, on {os.cpu_count()} cores: "
        f"on an idle machine the ranks share the 1-process run's cores and {ceiling:.2f} is the ceiling; on one "
        "loaded by other jobs each process gets its own share of the CPU, so N processes get more of it than "
        "1 and the figure can pass that ceiling. Neither is a measure of DDP on N devices"
    )


def compile_table(results: dict, fusions: list[str], args, device: torch.device) -> None:
    """torch.compile's step time of each fusion next to eager's, and its first (compiling) step."""
    print(f"\n{'fusion':<11} {'eager ms':>9} {'compiled ms':>12} {'speed-up':>9} {'first step s':>13}")
    for fusion in fusions:
        eager, compiled = results[fusion]["eager"], measure_compiled(fusion, args, device)
        results[fusion]["compiled"] = compiled
        print(
            f"{fusion:<11} {eager['step_ms']:>9.1f} {compiled['step_ms']:>12.1f} "
            f"{eager['step_ms'] / compiled['step_ms']:>8.2f}x {compiled['first_step_s']:>13.1f}",
            flush=True,
        )


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--model", default="default", choices=MODELS, help="large: the published backbones; tiny: for smoke tests"
    )
    parser.add_argument("--fusions", help="default: every fusion for the default model, cross_attn for large")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model) (run.compile)")
    parser.add_argument("--ddp", type=int, default=0, help="also time DDP on this many gloo processes (CPU)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--rank-of", help="internal: run one DDP rank of this fusion and print its JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rank_of:
        print(json.dumps(run_rank(args.rank_of, args)), flush=True)
        os._exit(0)  # no interpreter finalisation: the gloo teardown race (experiments/run.py does the same)
    device = torch.device(args.device)
    if args.ddp and device.type != "cpu":
        raise SystemExit("--ddp runs gloo ranks on the CPU; on GPUs use torchrun (docs/scaling.md)")
    fusions = (args.fusions or (",".join(FUSIONS) if args.model == "default" else "cross_attn")).split(",")
    peak = matmul_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    card_peak = bf16_peak(name)
    print(f"device {device} ({name}), torch threads {torch.get_num_threads()}, model {args.model}, batch {args.batch}, "
          f"bf16 {args.bf16}")  # fmt: skip
    bf16 = f", dense bf16 peak {card_peak / 1e12:.0f} TFLOP/s" if card_peak else ""
    print(f"fp32 matmul 2048^3: {peak / 1e9:.1f} GFLOP/s{bf16}\n")
    print(header(device.type == "cuda"))
    results = {}
    for fusion in fusions:
        results[fusion] = {"eager": measure(fusion, args, device)}
        print(row(fusion, results[fusion]["eager"], peak, card_peak), flush=True)
    if args.ddp:
        ddp_table(results, fusions, args)
    if args.compile:
        compile_table(results, fusions, args, device)
    if args.json:
        summary = {"peak_flop/s": peak, "device": name, "bf16_peak_flop/s": card_peak, "model": args.model}
        args.json.write_text(json.dumps(summary | {"fusions": results}, indent=1))


if __name__ == "__main__":
    use_huge_pages()
    main()
