"""Forward + backward time of each component of the default model in jax, next to torch eager's.

    python benchmarks/jax/components.py [--fusion cross_attn] [--steps 10] [--batch 32] [--threads 1] [--no-torch]

The components of benchmarks/torch/components.py, which it runs in a subprocess with the same arguments
for the jax/torch ratio: each encoder on the batch (voice_ecapa with its log-mel front end, and the
front end alone, forward only), the fusion on the encoders' outputs, the heads on the fusion's streams,
and the whole model's loss. Each is one `jax.jit` of the gradient of the sum of its floating outputs
with respect to its parameters (split/merge, as the trainer does; no optimizer step), in training mode,
on real batches of the embedded dataset: the best of `steps` calls after a compiling call and a warm-up
call (the minimum: the figure least inflated by other processes on a shared machine).
`--threads 1` runs both on one thread (XLA: no Eigen thread pool; torch: set_num_threads(1)) and times
the process's CPU time instead of the wall clock: the comparison that a loaded machine distorts least
(the other processes do not inflate it; with one compute thread it is the computation's time plus
dispatch, in both frameworks).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from research.config import Config  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.huge_pages import use_huge_pages  # noqa: E402
from research.jax.model import build_model  # noqa: E402


def total(out) -> jax.Array:
    """Sum of every floating array in a nested output (dicts, tuples)."""
    leaves = [x for x in jax.tree.leaves(out) if jnp.issubdtype(x.dtype, jnp.floating)]
    return sum((x.astype(jnp.float32).sum() for x in leaves), jnp.zeros(()))


def gradient(fn, module: nnx.Module, backward: bool):
    """jit of `inputs -> gradient of total(fn(module, inputs))` over module's parameters (or, with
    backward False, of the forward alone)."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss(params, rest, inputs):
        return total(fn(nnx.merge(graphdef, params, rest, copy=True), inputs))

    if backward:
        step = jax.jit(jax.grad(loss))
    else:
        step = jax.jit(lambda params, rest, inputs: fn(nnx.merge(graphdef, params, rest, copy=True), inputs))
    return functools.partial(step, params, rest)  # arguments, not constants that XLA would fold


@nnx.jit
def encode_and_fuse(model, batch: dict[str, jax.Array], present: dict[str, jax.Array]):
    """The encoders' outputs and the fusion's streams, jitted: compiling the forward once is faster than
    running it op by op."""
    outputs = {m: model.encoders[m](batch) for m in sorted(model.encoders)}
    return outputs, model.fusion(outputs, present)


def components(model, batch: dict[str, jax.Array]) -> dict:
    """{name: (jitted function, its argument)}; the fusion and the heads get the encoders' and the fusion's
    outputs, computed once, as arguments (not as constants, which XLA would fold at compile time)."""
    present = {m: batch[f"{m}_present"] for m in sorted(model.encoders)}
    outputs, streams = encode_and_fuse(model, batch, present)
    names = {"face": "face_cnn", "voice": "voice_ecapa", "text": "text_tiny"}
    parts = {names[m]: (gradient(lambda e, b: e(b), model.encoders[m], True), batch) for m in sorted(model.encoders)}
    frontend = model.encoders["voice"].frontend
    parts["log-mel front end"] = (gradient(lambda f, b: f(b["voice"], b["voice_len"]), frontend, False), batch)
    parts["fusion"] = (gradient(lambda f, x: f(*x), model.fusion, True), (outputs, present))

    def heads(h, x):
        streams, labels = x
        return [h[s](streams[s], labels, keep=labels >= 0)[0] for s in streams]

    parts["heads"] = (gradient(heads, model.heads, True), (streams, batch["target"]))
    parts["whole model"] = (gradient(lambda m, b: m(b)["loss"], model, True), batch)
    return parts


def time_part(fn, inputs, steps: int, clock) -> tuple[float, float]:
    """(first call = trace + compile s, best of `steps` calls s)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(inputs))
    first = time.perf_counter() - start
    jax.block_until_ready(fn(inputs))
    seconds = []
    for _ in range(steps):
        start = clock()
        jax.block_until_ready(fn(inputs))
        seconds.append(clock() - start)
    return first, min(seconds)


def torch_results(args) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "torch.json"
        command = [sys.executable, str(Path(__file__).parents[1] / "torch" / "components.py"), "--json", str(out)]
        command += ["--fusion", args.fusion, "--steps", str(args.steps), "--batch", str(args.batch)]
        command += ["--threads", str(args.threads)] if args.threads else []
        subprocess.run(command, check=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusion", default="cross_attn")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--only", nargs="+", help="time only these components")
    parser.add_argument("--threads", type=int, choices=[1], help="one thread in both frameworks")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    if args.threads:  # read when the CPU client starts, at the first jax operation below
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    clock = time.process_time if args.threads == 1 else time.perf_counter
    cfg = Config()
    cfg.model.fusion = args.fusion
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None, rngs=nnx.Rngs(0))
    model.train()
    batches = splits.train.batches(args.batch, shuffle=True, seed=0, epoch=1, train=True)
    batch = {k: jnp.asarray(v) for k, v in next(iter(batches)).items()}
    print(f"jax {jax.__version__}, {jax.devices()}, {args.fusion}, batch {args.batch}", flush=True)
    results = {}
    for name, (fn, inputs) in components(model, batch).items():
        if args.only and name not in args.only:
            continue
        first, best = time_part(fn, inputs, args.steps, clock)
        results[name] = 1e3 * best
        print(f"{name:<20} {results[name]:>9.1f} ms   (first call {first:.1f} s)", flush=True)
    if args.no_torch:
        return
    theirs = torch_results(args)
    print(f"\n{'component':<20} {'jax ms':>8} {'torch ms':>9} {'jax/torch':>10}")
    for name, ms in results.items():
        print(f"{name:<20} {ms:>8.1f} {theirs[name]:>9.1f} {ms / theirs[name]:>10.2f}")


if __name__ == "__main__":
    use_huge_pages()
    main()
