"""Forward + backward time and peak memory of each classification head, from 1k to 1M classes, with yardsticks.

    python benchmarks/torch/margin_heads.py [--classes 1000,10000,100000] [--heads softmax,arcface,...]
        [--dim 512] [--batch 256] [--repeats 5] [--threads 1] [--device cpu]
        [--million 1000000] [--million-batch 64] [--million-repeats 1] [--world 2] [--max-mb 6000]
        [--measure all]
    pip install pytorch-metric-learning    # the yardstick (or: pip install -e ".[bench]")
    python benchmarks/torch/margin_heads.py --yardsticks "" ...   # without it: the "x pml" columns are nan

Every case runs in a fresh subprocess (this file with --case), so one case's allocations cannot inflate the
next one's peak. A case builds the head from its default keywords, draws an embedding batch (B, D) that
requires grad and labels with two samples per class (so mask_proxy has pairs), runs one warm-up step and
then `repeats` timed steps of loss.backward() (no optimiser step), and reports the median.

Yardsticks, measured in the same run: pytorch-metric-learning's ArcFaceLoss and CosFaceLoss (our heads'
default scale and margins) on the same inputs, and the matmul limit: the three B x D x C matmuls of a step
(cosines forward, gradients of the embeddings and of the centres) at the FLOP/s of a plain (B, D) @ (D, 32768)
fp32 matmul measured at the start of the run with the same thread count.

The million-class section (--million, on the CPU): each head unsharded at 100k and at 1M classes, and sharded
on --world gloo processes (losses/torch/sharded.py: each rank holds C / N centres, gathers the global batch,
--million-batch in all, B / N rows from each rank; one thread per rank). Every collective has a timeout
(TIMEOUT) and the ranks a wall-clock limit. An unsharded 1M case is measured when the head is in --measure
and its peak, predicted as 10x the 100k case's increase (both terms of the memory, centres and (B, C) logits,
are linear in C), stays under --max-mb; otherwise the figure is that prediction (and 10x the 100k time),
marked "extrapolated". --classes "" skips the 1k-100k table. mask_proxy has no sharded
form (ShardedHead covers the softmax-based heads and SphereFace2).

Memory, CPU: the process's peak resident set size (getrusage ru_maxrss of the fresh process, per rank when
sharded), in total and as the increase over the peak measured just before the case allocates anything
(imports, torch runtime, gloo). tracemalloc does not see torch's allocations; RSS does, including allocator
caching, so it is an upper bound on live tensors. Memory, CUDA: torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import losses  # noqa: E402
from losses.torch.sharded import ShardedHead, gather_batch  # noqa: E402

HEADS = ("softmax", "sphereface", "sphereface_r", "sphereface2", "cosface", "arcface", "mask_proxy")
YARDSTICKS = ("pml_arcface", "pml_cosface")
TIMEOUT = datetime.timedelta(seconds=600)  # every collective; a 1M step on a loaded CPU takes tens of seconds
WALL_S = 1800  # one case, all its ranks


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, classes: int, dim: int) -> torch.nn.Module:
    """Our head `name`, or pytorch-metric-learning's loss (pml_arcface, pml_cosface) with our defaults."""
    if not name.startswith("pml_"):
        return losses.build("torch", name, dim=dim, classes=classes)
    try:
        from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss
    except ImportError:
        raise SystemExit('the yardstick needs pytorch-metric-learning: pip install -e ".[bench]"') from None
    if name == "pml_arcface":  # pml's margin is in degrees; ours 0.5 rad, scale 64
        return ArcFaceLoss(num_classes=classes, embedding_size=dim, margin=math.degrees(0.5), scale=64.0)
    return CosFaceLoss(num_classes=classes, embedding_size=dim, margin=0.35, scale=64.0)


def timed(step, repeats: int, device: torch.device) -> float:
    """Median milliseconds of `repeats` calls of step() after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        if i > 0:  # the first step warms up the allocator and kernels
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def labels_for(classes: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(classes, device=device)[: batch // 2].repeat_interleave(2)  # (B,) two per class


def run_case(name: str, classes: int, dim: int, batch: int, repeats: int, device: torch.device) -> dict:
    """Time one unsharded head; returns the figures as a dict (printed as one JSON line by --case)."""
    baseline = peak_rss_mb()
    torch.manual_seed(0)
    head = build(name, classes, dim).to(device)
    x = torch.randn(batch, dim, device=device, requires_grad=True)  # (B, D)
    labels = labels_for(classes, batch, device)

    def step():
        out = head(x, labels)
        (out[0] if isinstance(out, tuple) else out).backward()  # ours return (loss, logits), pml the loss
        x.grad = None
        head.zero_grad()

    result = {"head": name, "classes": classes, "ms": timed(step, repeats, device)}
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_mb"], result["increase_mb"] = peak_rss_mb(), peak_rss_mb() - baseline
    return result


def run_rank(name: str, classes: int, dim: int, batch: int, repeats: int, rank: int, world: int, rdzv: str) -> dict:
    """One rank of a sharded case on the CPU: C / N centres, B / N rows of the global batch B."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world, timeout=TIMEOUT)
    baseline = peak_rss_mb()
    torch.manual_seed(0)
    labels = labels_for(classes, batch, torch.device("cpu"))  # the same global labels on every rank
    block = classes // world
    head = ShardedHead(build(name, block, dim), offset=rank * block, classes=classes)
    torch.manual_seed(1 + rank)
    x = torch.randn(batch // world, dim, requires_grad=True)  # (B / N, D) this rank's rows

    def step():
        dist.barrier()  # the step of the job: every rank starts together, the slowest one ends it
        loss, _ = head(gather_batch(x), labels)
        loss.backward()
        x.grad = None
        head.zero_grad()

    ms = timed(step, repeats, torch.device("cpu"))
    result = {"head": name, "classes": classes, "rank": rank, "ms": ms}
    result["peak_mb"], result["increase_mb"] = peak_rss_mb(), peak_rss_mb() - baseline
    dist.destroy_process_group()
    return result


def matmul_flops(batch: int, dim: int, device: torch.device, columns: int = 32768, repeats: int = 5) -> float:
    """FLOP/s of a (B, D) @ (D, columns) fp32 matmul (2 B D columns FLOPs), best of `repeats`."""
    a, b = torch.randn(batch, dim, device=device), torch.randn(dim, columns, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * batch * dim * columns / best


def limit_ms(batch: int, dim: int, classes: int, flops: float) -> float:
    """The three B x D x C matmuls of a step (forward, two backward) at `flops`, in ms."""
    return 1000 * 3 * 2 * batch * dim * classes / flops


class Runner:
    """Runs cases in fresh subprocesses of this file, with the run's common arguments."""

    def __init__(self, args):
        self.common = [f"--dim={args.dim}", f"--device={args.device}", f"--threads={args.threads}"]

    def command(self, name: str, classes: int, batch: int, repeats: int) -> list[str]:
        case = ["--case", f"{name},{classes}", f"--batch={batch}", f"--repeats={repeats}"]
        return [sys.executable, __file__, *case, *self.common]

    def case(self, name: str, classes: int, batch: int, repeats: int) -> dict:
        command = self.command(name, classes, batch, repeats)
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=WALL_S)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def sharded(self, name: str, classes: int, batch: int, repeats: int, world: int) -> dict:
        """Every rank's figures -> the job's: the slowest rank's time, the largest rank's memory."""
        with tempfile.TemporaryDirectory() as tmp:
            procs = [
                subprocess.Popen(
                    self.command(name, classes, batch, repeats)
                    + [f"--rank={r}", f"--world={world}", f"--rendezvous={tmp}/rendezvous"],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for r in range(world)
            ]
            end = time.monotonic() + WALL_S
            try:
                outs = [p.communicate(timeout=max(1.0, end - time.monotonic()))[0] for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            if any(p.returncode for p in procs):
                raise SystemExit(
                    f"sharded {name} at {classes} classes: a rank failed ({[p.returncode for p in procs]})"
                )
        ranks = [json.loads(o.strip().splitlines()[-1]) for o in outs]
        worst = max(ranks, key=lambda r: r["increase_mb"])
        return {"ms": max(r["ms"] for r in ranks), "peak_mb": worst["peak_mb"], "increase_mb": worst["increase_mb"]}


def table(runner: Runner, args, flops: float) -> None:
    """The 1k-100k rows: every head and both yardsticks at --batch, times relative to the yardsticks."""
    print(f"\nbatch {args.batch}; x = this head's time / the yardstick's time in the same run")
    print(
        f"{'head':<14}{'classes':>9}{'ms/step':>10}{'x pml arc':>10}{'x pml cos':>10}{'x limit':>9}",
        "  peak RSS MB (+case)",
    )
    names = [*filter(None, args.yardsticks.split(",")), *args.heads.split(",")]
    for classes in map(int, args.classes.split(",")):
        rows = {name: runner.case(name, classes, args.batch, args.repeats) for name in names}
        limit = limit_ms(args.batch, args.dim, classes, flops)
        print(f"{'matmul limit':<14}{classes:>9}{limit:>10.1f}")
        nan = {"ms": math.nan}  # a yardstick left out
        for name, r in rows.items():
            arc = r["ms"] / rows.get("pml_arcface", nan)["ms"]
            cos = r["ms"] / rows.get("pml_cosface", nan)["ms"]
            extra = f"  (+{r['increase_mb']:.0f})" if "increase_mb" in r else ""
            print(
                f"{name:<14}{classes:>9}{r['ms']:>10.1f}{arc:>10.2f}{cos:>10.2f}{r['ms'] / limit:>9.1f}   "
                f"{r['peak_mb']:.0f}{extra}",
                flush=True,
            )


def million(runner: Runner, args, flops: float) -> None:
    """Each head at C / 10 and C classes unsharded (measured or extrapolated) and sharded on --world ranks."""
    big, world, batch, repeats = args.million, args.world, args.million_batch, args.million_repeats
    small, measure = big // 10, args.measure.split(",")
    print(
        f"\n{big} classes, batch {batch} ({batch // world} per rank when sharded on {world} gloo processes, one "
        f"thread each), median of {repeats} steps; MB = the peak RSS increase of the case's process (per rank "
        "when sharded); x arc = time / pml ArcFaceLoss's at the same classes; x lim = time / the matmul limit"
    )
    full, part = limit_ms(batch, args.dim, big, flops), limit_ms(batch, args.dim, big // world, flops)
    print(f"matmul limit: unsharded {full:.0f} ms, sharded {part:.0f} ms (each rank's C / N block on its own core)")
    print(
        f"{'head':<14}{f'{small} ms':>10}{'x arc':>6}{'MB':>7}{f'{big} ms':>11}{'x arc':>6}{'x lim':>6}{'MB':>7}"
        f" {'':<13}{'sharded ms':>11}{'x lim':>6}{'MB/rank':>8}{'MB ratio':>9}{'x time':>7}"
    )
    pml = {"small": math.nan, "big": math.nan}  # pml_arcface's, when it is measured (it comes first)
    for name in [*filter(None, args.yardsticks.split(",")), *args.heads.split(",")]:
        at_small = runner.case(name, small, batch, repeats)
        predicted = at_small["peak_mb"] + 9 * at_small["increase_mb"]  # baseline + 10x the increase
        if (name in measure or "all" in measure) and predicted <= args.max_mb:
            whole, how = runner.case(name, big, batch, repeats), "measured"
        else:
            whole = {"ms": 10 * at_small["ms"], "increase_mb": 10 * at_small["increase_mb"]}
            how = "extrapolated"
        if name == "pml_arcface":
            pml = {"small": at_small["ms"], "big": whole["ms"]}
        line = f"{name:<14}{at_small['ms']:>10.0f}{at_small['ms'] / pml['small']:>6.2f}{at_small['increase_mb']:>7.0f}"
        line += f"{whole['ms']:>11.0f}{whole['ms'] / pml['big']:>6.2f}{whole['ms'] / full:>6.1f}"
        line += f"{whole['increase_mb']:>7.0f} {how:<13}"
        if name.startswith("pml_") or name == "mask_proxy":  # no sharded form
            print(line + f"{'-':>11}", flush=True)
            continue
        s = runner.sharded(name, big, batch, repeats, world)
        ratio = s["increase_mb"] / max(whole["increase_mb"], 1.0)  # the 1M increase is GBs; 1 MB guards tiny runs
        line += (
            f"{s['ms']:>11.0f}{s['ms'] / part:>6.1f}{s['increase_mb']:>8.0f}{ratio:>9.2f}{s['ms'] / whole['ms']:>7.2f}"
        )
        print(line, flush=True)
    print(
        f"MB ratio: sharded per rank / unsharded (C / N predicts {1 / world:.2f}); x time: sharded / unsharded. "
        "extrapolated: 10x the C / 10 case's time and increase (its peak would pass --max-mb, or the head is not "
        "in --measure)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", default="1000,10000,100000")
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--yardsticks", default=",".join(YARDSTICKS), help='"": none (no pytorch-metric-learning)')
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--million", type=int, default=1_000_000, help="classes of the sharded section (0: none)")
    parser.add_argument("--million-batch", type=int, default=64)
    parser.add_argument("--million-repeats", type=int, default=1, help="timed steps of a million-class case")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--max-mb", type=float, default=6000, help="largest unsharded peak RSS to measure")
    parser.add_argument("--measure", default="all", help="heads whose unsharded million case is measured (else 10x)")
    parser.add_argument("--case", help="internal: run one head,classes case and print it as JSON")
    parser.add_argument("--rank", type=int, help="internal: this process's rank in a sharded case")
    parser.add_argument("--rendezvous", help="internal: the sharded case's rendezvous file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.case:
        name, classes = args.case.split(",")
        if args.rank is None:
            result = run_case(name, int(classes), args.dim, args.batch, args.repeats, device)
        else:
            result = run_rank(
                name, int(classes), args.dim, args.batch, args.repeats, args.rank, args.world, args.rendezvous
            )
        print(json.dumps(result), flush=True)
        if args.rank is not None:
            os._exit(0)  # no interpreter finalisation: the gloo teardown race (experiments/run.py does the same)
        return
    runner = Runner(args)
    flops = {b: matmul_flops(b, args.dim, device) for b in {args.batch, args.million_batch}}
    print(
        f"device {args.device}, threads {torch.get_num_threads()}, embedding {args.dim}, median of {args.repeats} "
        f"forward+backward steps; plain matmul "
        + ", ".join(f"(B={b}) {f / 1e9:.1f} GFLOP/s" for b, f in sorted(flops.items()))
    )
    if args.classes:
        table(runner, args, flops[args.batch])
    if args.million:
        if args.device != "cpu":
            raise SystemExit("the sharded section runs gloo on the CPU: --device cpu (or --million 0)")
        million(runner, args, flops[args.million_batch])


if __name__ == "__main__":
    main()
