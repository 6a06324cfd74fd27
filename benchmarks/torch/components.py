"""Forward + backward time of each component of the default model in torch eager, one at a time.

    python benchmarks/torch/components.py [--fusion cross_attn] [--steps 10] [--batch 32] [--threads N] [--json FILE]

The components of benchmarks/jax/components.py (which runs this script for its ratios): each encoder on
the batch (voice_ecapa with its log-mel front end, and the front end alone, forward only), the fusion on
the encoders' outputs, the heads on the fusion's streams, and the whole model's loss. Each is timed as
forward, sum of its floating outputs, backward, on real batches of the embedded dataset in training mode,
the best of `steps` calls after two warm-up calls (the minimum: the figure least inflated by other
processes on a shared machine); no optimizer step. With `--threads 1` the time is the process's CPU
time, which the other processes on a loaded machine do not inflate (as benchmarks/jax/components.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from research.config import Config  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.huge_pages import use_huge_pages  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import to_device  # noqa: E402


def total(out) -> torch.Tensor:
    """Sum of every floating tensor in a nested output (dicts, tuples)."""
    if isinstance(out, torch.Tensor):
        return out.float().sum() if out.is_floating_point() else torch.zeros(())
    values = out.values() if isinstance(out, dict) else out
    return sum((total(v) for v in values), torch.zeros(()))


def components(model, batch: dict[str, torch.Tensor]) -> dict:
    """{name: (function of nothing -> output, whether to backpropagate)}; the fusion and heads get their
    inputs detached, as computed once by the encoders and the fusion."""
    present = {m: batch[f"{m}_present"] for m in sorted(model.encoders)}
    with torch.no_grad():
        outputs = {m: model.encoders[m](batch) for m in sorted(model.encoders)}
        streams = model.fusion(outputs, present)
    labels = batch["target"]
    names = {"face": "face_cnn", "voice": "voice_ecapa", "text": "text_tiny"}
    parts = {names[m]: (lambda m=m: model.encoders[m](batch), True) for m in sorted(model.encoders)}
    voice = model.encoders["voice"]
    parts["log-mel front end"] = (lambda: voice.frontend(batch["voice"], batch["voice_len"]), False)
    parts["fusion"] = (lambda: model.fusion(outputs, present), True)
    parts["heads"] = (lambda: [model.heads[s](streams[s], labels, keep=labels >= 0)[0] for s in streams], True)
    parts["whole model"] = (lambda: model(batch)["loss"], True)
    return parts


def time_part(fn, backward: bool, steps: int, clock) -> float:
    seconds = []
    for _ in range(steps + 2):
        start = clock()
        if backward:
            total(fn()).backward()
        else:
            with torch.no_grad():
                fn()
        seconds.append(clock() - start)
    return min(seconds[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusion", default="cross_attn")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's); 1: CPU time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter  # see benchmarks/jax/components.py
    cfg = Config()
    cfg.model.fusion = args.fusion
    splits = load(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None).train()
    batches = splits.train.batches(args.batch, shuffle=True, seed=0, epoch=1, train=True)
    batch = to_device(next(iter(batches)), torch.device("cpu"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.fusion}, batch {args.batch}")
    results = {}
    for name, (fn, backward) in components(model, batch).items():
        results[name] = 1e3 * time_part(fn, backward, args.steps, clock)
        print(f"{name:<20} {results[name]:>9.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    use_huge_pages()
    main()
