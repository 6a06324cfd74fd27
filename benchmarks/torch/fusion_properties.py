"""How reliably the fusion properties of tests/research/test_fusion_properties_torch.py hold: the test's
training recipe over seeds x batch orders, with each model's success rate and accuracy distribution.

    nice -n 10 python benchmarks/torch/fusion_properties.py --models early,cross_attn   # 5 seeds x 2 orders
    nice -n 10 python benchmarks/torch/fusion_properties.py --seeds 0-9 --orders 0-3 --models cross_attn
    nice -n 10 python benchmarks/torch/fusion_properties.py --carry redundant --models late,face
    nice -n 10 python benchmarks/torch/fusion_properties.py --models cross_attn --set=--modalities=face,voice,text

A run trains one model on one (carry, seed, order) and scores the mean of val and test accuracy (the
`group` label of unseen people). `seed` is run.seed: weights, dropout and SpecAugment draws, and the
pipeline's permutation stream. `order` changes the batch order alone, at the same initial weights: epoch e
reads the permutation the pipeline draws for epoch e + 100 * order (the test module's `batch_order`), the
kind of harmless change to the permutation stream (still a pure function of seed and epoch) that a new
input pipeline makes. `--data-seeds` also varies data.synthetic.seed (other people, traits and codes).

The property, per model: early and cross_attn learn the synergy task (accuracy > LEARNED), late fusion and
single modalities stay below NEAR_CHANCE on it; on the redundant task every model exceeds LEARNED. Prints
one line per run (with the validation accuracy after each epoch), then per model: successes / runs, a
one-sided 95% lower confidence bound on the success rate (Clopper-Pearson), the accuracy quantiles and, for
the models whose test asks for at least MIN_LEARNED of len(VARIANTS) runs to succeed, the chance that the
test fails at the measured rate and at the lower bound. The measured figures and the commands are in
docs/fusion.md ("Fusion properties").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.research.test_fusion_properties_torch import (  # noqa: E402
    LEARNED,
    MIN_LEARNED,
    MODELS,
    NEAR_CHANCE,
    TOKEN_LEVEL,
    VARIANTS,
    accuracy,
)


def numbers(text: str) -> list[int]:
    """ "0-4" -> [0, 1, 2, 3, 4]; "0,2,5" -> [0, 2, 5]."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(x) for x in text.split(",")]


def holds(carry: str, model: str, acc: float) -> bool:
    if carry == "synergy" and model not in TOKEN_LEVEL:
        return acc < NEAR_CHANCE
    return acc > LEARNED


def lower_bound(successes: int, runs: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower confidence bound on a success rate."""
    return 0.0 if successes == 0 else float(stats.beta.ppf(1 - confidence, successes, runs - successes + 1))


def failure_chance(rate: float) -> float:
    """P(fewer than MIN_LEARNED of len(VARIANTS) independent runs succeed) at success rate `rate`."""
    return float(stats.binom.cdf(MIN_LEARNED - 1, len(VARIANTS), rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--carry", default="synergy", choices=["synergy", "redundant"])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0-4", help="run.seed values, e.g. 0-4 or 0,3")
    parser.add_argument("--orders", default="0-1", help="batch-order variants (0 = the pipeline's own order)")
    parser.add_argument("--data-seeds", default="0", help="data.synthetic.seed values")
    parser.add_argument("--set", action="append", default=[], help="an extra override on top of the recipe")
    parser.add_argument("--data-root", default="", help="where datasets are cached (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    results = {m: [] for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_root = Path(args.data_root) if args.data_root else tmp / "data"
        for data_seed in numbers(args.data_seeds):
            for seed in numbers(args.seeds):
                for order in numbers(args.orders):
                    for model in models:
                        started = time.time()
                        name = f"{model}-d{data_seed}-s{seed}-o{order}"
                        extra = [f"--data.synthetic.seed={data_seed}", *args.set]
                        val, test = accuracy(tmp / name, data_root, args.carry, model, seed, order, extra)
                        acc = (val + test) / 2
                        results[model].append(acc)
                        ok = "ok" if holds(args.carry, model, acc) else "FAILS"
                        history = json.loads((tmp / name / "record.json").read_text())["history"]
                        curve = " ".join(f"{h['val/acc']:.2f}" for h in history)
                        print(
                            f"{model:<10} data {data_seed} seed {seed} order {order}: acc {acc:.3f} "
                            f"(val {val:.3f}, test {test:.3f}) {ok}  val by epoch {curve}  "
                            f"{time.time() - started:.0f} s",
                            flush=True,
                        )
    print(f"\ncarry={args.carry} recipe extras={args.set or 'none'}; property: early/cross_attn > {LEARNED}", end="")
    print(f", others < {NEAR_CHANCE}" if args.carry == "synergy" else ", every model")
    for model, accs in results.items():
        accs = np.array(accs)
        success = int(sum(holds(args.carry, model, a) for a in accs))
        bound = lower_bound(success, len(accs))
        q = np.quantile(accs, [0, 0.25, 0.5, 0.75, 1])
        line = (
            f"{model:<10} holds {success}/{len(accs)} (95% lower bound {bound:.2f})  acc min {q[0]:.3f} "
            f"q25 {q[1]:.3f} median {q[2]:.3f} q75 {q[3]:.3f} max {q[4]:.3f}"
        )
        if args.carry == "synergy" and model in TOKEN_LEVEL:
            rate = success / len(accs)
            line += (
                f"  P(test fails: < {MIN_LEARNED} of {len(VARIANTS)}) {failure_chance(rate):.3f} at the measured rate, "
                f"{failure_chance(bound):.3f} at the bound"
            )
        print(line)


if __name__ == "__main__":
    main()
