"""Training throughput of each fusion type on this machine, next to its measured matmul FLOP/s.

    python benchmarks/torch/throughput.py [--steps 10] [--batch 32] [--device cpu] [--bf16] [--json FILE]

For every fusion module it builds the default model (face_cnn + voice_ecapa + text_tiny at dim 64),
times full training steps (forward, backward, AdamW) on real batches of the embedded dataset, counts the
FLOPs of one step with torch's FLOP counter (matmuls and convolutions, forward and backward), and prints
samples/s, achieved GFLOP/s and the ratio to the peak-like FLOP/s of a large fp32 matmul measured in the
same run. All figures are measured; nothing is assumed about the hardware.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.throughput_table import HEADER, row  # noqa: E402
from research.config import Config  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import to_device  # noqa: E402
from research.torch.trainer import make_optimizer  # noqa: E402

FUSIONS = ("early", "stack", "cross_attn", "late", "gated")


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


def measure(fusion: str, args, device: torch.device) -> dict[str, float]:
    cfg = Config()
    cfg.model.fusion = fusion
    cfg.data.batch_size = args.batch
    cfg.optim.bf16 = args.bf16
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None).to(device).train()
    optimizer = make_optimizer(model, cfg)
    batches = splits.train.batches(args.batch, shuffle=True, seed=0, epoch=1, train=True)
    batches = [to_device(b, device) for b in batches if len(b["target"]) == args.batch]

    def step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    for batch in batches[:2]:  # warm-up
        step(batch)
    sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(batches[i % len(batches)])
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    return {"samples/s": args.batch / seconds, "step_ms": 1e3 * seconds, "flop/s": counter.get_total_flops() / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = matmul_flops(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}, bf16 {args.bf16}")
    print(f"fp32 matmul 2048^3: {peak / 1e9:.1f} GFLOP/s\n")
    print(HEADER)
    results = {}
    for fusion in FUSIONS:
        results[fusion] = measure(fusion, args, device)
        print(row(fusion, results[fusion], peak))
    if args.json:
        args.json.write_text(json.dumps({"peak_flop/s": peak, "fusions": results}, indent=1))


if __name__ == "__main__":
    main()
