"""Step time of the default model fed by the input pipeline, against the same steps fed from memory.

    python benchmarks/torch/pipeline.py [--steps 10] [--batch 32] [--workers 2] [--per-identity 20] [--threads 0]

Feeds of the same training steps (default model, the embedded dataset made larger with --per-identity
samples per identity): batches already in memory (the yardstick), the pipeline over the in-memory cache
(data.cache, the default), the pipeline decoding loose files in --workers processes (data.cache=false),
and packed ArrayRecord shards (prepare.py pack) read in --workers processes. A step's time includes the
wait for its batch; the spawned workers' start-up (time to the first batch) is printed apart. Then the
samples/s of decoding in one process and through the pipeline with 1 to --workers workers (in all and per
worker), without a model. The issue's goal: a step fed by 2 workers within 1.1x of the in-memory step.
--threads sets the training process's torch threads (0: torch's default); on a CPU shared with other jobs
use 1: OpenMP threads spin-waiting for a descheduled sibling make a 2-thread step many times slower there.
(Under benchmarks/torch/ because it imports torch: the layout rule.)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from research.config import Config  # noqa: E402
from research.data import pack, synthetic  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import to_device  # noqa: E402
from research.torch.trainer import make_optimizer  # noqa: E402

EPOCH = {"shuffle": True, "seed": 0, "epoch": 1, "train": True}


def trainer(cfg: Config, classes: int, vocab: int):
    """A step function of the default model (forward, backward, AdamW)."""
    torch.manual_seed(0)
    model = build_model(cfg, classes, vocab, None).train()
    optimizer = make_optimizer(model, cfg)

    def step(batch: dict) -> None:
        loss = model(to_device(batch, torch.device("cpu")))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, batches, steps: int) -> tuple[float, float]:
    """(seconds to the first batch, seconds per step) over `steps` steps after two warm-up steps."""
    start = time.perf_counter()
    first = next(batches)
    startup = time.perf_counter() - start
    step(first)
    step(next(batches))
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        step(batch)
    return startup, (time.perf_counter() - start) / steps


def rate(batches, batch: int) -> float:
    """Samples/s of a batch iterator after its first batch (worker start-up excluded)."""
    next(batches)
    start, count = time.perf_counter(), 0
    for b in batches:
        count += len(b["face"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config()
    cfg.data.batch_size = args.batch
    cfg.data.synthetic.samples_per_identity = args.per_identity
    path = synthetic.ensure(cfg.data)
    cached = load(cfg.data)
    if len(cached.train) < (args.steps + 3) * args.batch:
        raise SystemExit(f"{len(cached.train)} training samples: fewer than steps + 3 batches; raise --per-identity")
    cfg.data.cache, cfg.data.workers = False, args.workers
    files = load(cfg.data)
    folder = Path(tempfile.mkdtemp(prefix="packed-"))
    packed_manifest, _ = pack.write(
        path, folder, image_size=cfg.data.image_size, sample_rate=cfg.data.sample_rate, workers=args.workers
    )
    cfg.data.dataset = str(packed_manifest)
    packed = load(cfg.data)
    step = trainer(cfg, len(cached.classes[cfg.data.target]), cached.vocab_size)
    memory = list(cached.train.batches(args.batch, **EPOCH))
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, {len(cached.train)} training samples")
    print(f"{'feed':<34} {'first batch s':>13} {'step ms':>8} {'vs memory':>9}")
    feeds = {
        "in-memory batches (yardstick)": iter(memory),
        "pipeline, cache, 0 workers": cached.train.batches(args.batch, **EPOCH),
        f"pipeline, files, {args.workers} workers": files.train.batches(args.batch, **EPOCH),
        f"pipeline, packed, {args.workers} workers": packed.train.batches(args.batch, **EPOCH),
    }
    base, ratios = None, {}
    for name, batches in feeds.items():
        startup, seconds = timed(step, batches, args.steps)
        if hasattr(batches, "close"):
            batches.close()
        base = base or seconds
        ratios[name] = seconds / base
        print(f"{name:<34} {startup:>13.2f} {1e3 * seconds:>8.1f} {seconds / base:>8.2f}x", flush=True)
    worst = max(ratios[name] for name in list(feeds)[2:])
    print(f"goal: <= 1.10x with {args.workers} workers from files and packed shards; worst {worst:.2f}x")

    print(f"\n{'decoding (no model)':<34} {'samples/s':>10} {'per worker':>11}")
    for name, source in [
        ("files, in this process", files.train.stream.source),
        ("packed, in this process", packed.train.stream.source),
    ]:
        n = min(300, len(source))
        start = time.perf_counter()
        for i in range(n):
            source[i]
        print(f"{name:<34} {n / (time.perf_counter() - start):>10.0f}", flush=True)
    for workers in range(1, args.workers + 1):  # --workers 0: none (no processes at all)
        files.train.workers = workers
        with files.train.batches(args.batch, **EPOCH) as batches:
            samples, name = rate(batches, args.batch), f"pipeline, files, {workers} worker(s)"
            print(f"{name:<34} {samples:>10.0f} {samples / workers:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
