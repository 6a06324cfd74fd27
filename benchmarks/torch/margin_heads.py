"""Forward + backward time and peak memory of each classification head at 1k, 10k and 100k classes.

    python benchmarks/torch/margin_heads.py [--classes 1000,10000,100000] [--heads softmax,arcface,...]
                                            [--dim 512] [--batch 256] [--repeats 5] [--device cpu] [--threads 0]

Every (head, classes) case runs in a fresh subprocess (this file with --case), so one case's allocations
cannot inflate the next one's peak. A case builds the head from its default keywords, draws an embedding
batch (B, D) that requires grad and labels with two samples per class (so mask_proxy has pairs), runs one
warm-up step and then `repeats` timed steps of loss.backward() (no optimiser step), and reports the median.
--threads sets torch's intra-op threads (0 = torch's default); on a CPU shared with other jobs, 1 thread
gives steadier figures than spin-waiting OpenMP threads.

Memory, CPU: the process's peak resident set size (getrusage ru_maxrss), in total and as the increase over
the peak measured just before the case allocates anything (imports, torch runtime). tracemalloc does not
see torch's allocations; RSS does, including allocator caching, so it is an upper bound on live tensors.
Memory, CUDA: torch.cuda.max_memory_allocated (live tensors only; no baseline needed).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import losses  # noqa: E402

HEADS = ("softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(name: str, classes: int, dim: int, batch: int, repeats: int, device: torch.device) -> dict:
    """Time one head; returns the figures as a dict (printed as one JSON line by --case)."""
    baseline = peak_rss_mb()
    torch.manual_seed(0)
    head = losses.build("torch", name, dim=dim, classes=classes).to(device)
    x = torch.randn(batch, dim, device=device, requires_grad=True)  # (B, D)
    labels = torch.randperm(classes, device=device)[: batch // 2].repeat_interleave(2)  # (B,) two per class
    times = []
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        loss, _ = head(x, labels)
        loss.backward()
        sync(device)
        if i > 0:  # the first step warms up the allocator and kernels
            times.append(time.perf_counter() - start)
        x.grad, head.zero_grad()
    result = {"head": name, "classes": classes, "ms": 1000 * statistics.median(times)}
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_mb"], result["increase_mb"] = peak_rss_mb(), peak_rss_mb() - baseline
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", default="1000,10000,100000")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--case", help="internal: run one head,classes case and print it as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        name, classes = args.case.split(",")
        print(json.dumps(run_case(name, int(classes), args.dim, args.batch, args.repeats, torch.device(args.device))))
        return
    common = [
        f"--dim={args.dim}",
        f"--batch={args.batch}",
        f"--repeats={args.repeats}",
        f"--device={args.device}",
        f"--threads={args.threads}",
    ]
    print(
        f"device {args.device}, threads {torch.get_num_threads()}, embedding {args.dim}, batch {args.batch}, "
        f"median of {args.repeats} forward+backward steps"
    )
    memory = "peak alloc MB" if args.device.startswith("cuda") else "peak RSS MB  (+case MB)"
    print(f"{'head':<14}{'classes':>9}{'ms/step':>10}   {memory}")
    for classes in args.classes.split(","):
        for name in args.heads.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--case", f"{name},{classes}", *common],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            extra = f"  (+{r['increase_mb']:.0f})" if "increase_mb" in r else ""
            print(f"{r['head']:<14}{r['classes']:>9}{r['ms']:>10.1f}   {r['peak_mb']:.0f}{extra}", flush=True)


if __name__ == "__main__":
    main()
