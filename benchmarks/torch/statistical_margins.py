"""Margins of the suite's statistical tests: every test that puts a bar on the outcome of a short training run
(an accuracy, a matching rate, an angle, a loss decrease), re-measured under what changes such an outcome
from one machine to the next, with the margin of its statistic over the bar in the worst case.

    nice -n 10 python benchmarks/torch/statistical_margins.py             # every check, every variation
    nice -n 10 python benchmarks/torch/statistical_margins.py --checks match,synergy_early --variations threads
    python benchmarks/torch/statistical_margins.py --list                 # the checks and their tests
    python benchmarks/torch/statistical_margins.py --table a.json b.json  # docs/testing.md's table of --json files

It lives under torch/ because it sets torch's thread count; its one jax check runs through the jax test module.

Variations (each measurement runs in a fresh process, so that thread settings and XLA flags take effect):
  as in CI        the test as it runs: its own seed, torch's default thread count (one per core)
  1 thread        torch.set_num_threads(1); jax with XLA's multi-threaded Eigen off
  OMP 1           OMP_NUM_THREADS=1 in the environment (torch and the BLAS read it at start)
  no fast math    XLA_FLAGS=--xla_cpu_enable_fast_math=false (jax checks only)
  seed +k         the test's run.seed + k (k = 1, 2, 3), and batch order k where the test has one
A check's margin is (statistic - bar) for a lower bar and (bar - statistic) for an upper one; a negative
margin is a variation under which the test would fail. The figures measured are in each test's docstring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the repository root: the checks reuse the tests' own code


@dataclass(frozen=True)
class Check:
    test: str  # the test (file::name) whose statistic this is
    measure: Callable[[int, Path, Path], dict[str, float]]  # (seed offset, work folder, data root) -> statistics
    bars: dict[str, tuple[str, float]]  # statistic -> (">" or "<", bar)
    backend: str = "torch"


def loss_drop(history: list[dict]) -> float:
    return history[0]["train/loss"] - history[-1]["train/loss"]


def match(k: int, work: Path, data: Path) -> dict[str, float]:
    from tests.research import test_pair_training_torch as t

    cfg, run_dir, _, history = t.train_match(work, data, seed=k, order=k)
    return {"subject_mean": t.match_statistic(cfg, run_dir), "loss_drop": loss_drop(history)}


def pair_torch(name: str) -> Callable:
    def measure(k: int, work: Path, data: Path) -> dict[str, float]:
        from tests.research import test_pair_training_torch as t

        return {"loss_drop": loss_drop(t.train_pair(work, data, name, seed=k)[3])}

    return measure


def siamese_jax(k: int, work: Path, data: Path) -> dict[str, float]:
    from tests.research import test_pair_training_jax as t

    return {"loss_drop": loss_drop(t.train_siamese(work, data, seed=k)[3])}


def fusion_property(carry: str, model: str) -> Callable:
    def measure(k: int, work: Path, data: Path) -> dict[str, float]:
        from tests.research import test_fusion_properties_torch as t

        return {"acc": t.mean_accuracy(work, data, carry, model, seed=k, order=k)}

    return measure


def synergy(name: str, **kwargs) -> Callable:
    def measure(k: int, work: Path, data: Path) -> dict[str, float]:
        from tests.fusion import test_synergy_torch as t

        return {"acc": t.train_and_test(name, seed=k, **kwargs)}

    return measure


def learnable(k: int, work: Path, data: Path) -> dict[str, float]:
    from tests.data import test_learnable as t

    identity, group = t.identity_scores(work / "closed", seed=1 + k), t.group_scores(work / "open", seed=1 + k)
    return {"identity_min": min(identity.values()), "group_min": min(group.values())}


def margin_geometry(k: int, work: Path, data: Path) -> dict[str, float]:
    from tests.losses import test_margin_geometry_torch as t

    g = t.mean_geometry(tuple(s + len(t.SEEDS) * k for s in t.SEEDS))  # seed +k: the next disjoint seed set
    soft = g["softmax"]
    out = {f"{h}_target_gain": soft["target"] - g[h]["target"] for h in t.TARGET_MARGIN}
    out |= {f"{h}_centre_gain": g[h]["centre"] - soft["centre"] for h in t.MARGIN_HEADS}
    out |= {f"{h}_nearest_gain": g[h]["nearest"] - soft["nearest"] for h in t.MARGIN_HEADS}
    return out | {"max_target_angle": max(m["target"] for m in g.values())}


def margin_bars() -> dict[str, tuple[str, float]]:
    from tests.losses import test_margin_geometry_torch as t

    bars = {f"{h}_target_gain": (">", m) for h, m in t.TARGET_MARGIN.items()}
    bars |= {f"{h}_centre_gain": (">", t.MIN_CENTRE_MARGIN) for h in t.MARGIN_HEADS}
    bars |= {f"{h}_nearest_gain": (">", t.NEAREST_MARGIN) for h in t.MARGIN_HEADS}
    return bars | {"max_target_angle": ("<", 60.0)}


def attack(k: int, work: Path, data: Path) -> dict[str, float]:
    from tests.experiments import test_attack_torch as t

    run_dir = t.train_tiny(work / "runs", data, seed=k)
    clean = json.loads((run_dir / "record.json").read_text())["summary"]["test/acc"]
    out = {"clean_acc": clean}
    for name in ("fgsm", "pgd"):
        rows = t.attack(run_dir, work / name, "--attack", name, "--modality", "face", "--eps", "0", str(t.EPS["face"]))
        out[f"{name}_face_drop"] = rows[0]["acc"] - rows[1]["acc"]
    rows = t.attack(run_dir, work / "voice", "--attack", "fgsm", "--modality", "voice", "--eps", "0.01")
    return out | {"fgsm_voice_drop": clean - rows[0]["acc"]}


def fusion_checks() -> dict[str, Check]:
    from tests.research import test_fusion_properties_torch as t

    test = "tests/research/test_fusion_properties_torch.py::"
    checks = {}
    for model in t.TOKEN_LEVEL:
        name = f"{test}test_token_level_fusion_learns_the_synergy_task[{model}]"
        checks[f"fusion_synergy_{model}"] = Check(name, fusion_property("synergy", model), {"acc": (">", t.LEARNED)})
    for model in t.AT_CHANCE:
        name = f"{test}test_late_fusion_and_single_modalities_stay_at_chance_on_synergy[{model}]"
        checks[f"fusion_chance_{model}"] = Check(name, fusion_property("synergy", model), {"acc": ("<", t.NEAR_CHANCE)})
        name = f"{test}test_the_models_at_chance_learn_the_redundant_task[{model}]"
        checks[f"fusion_redundant_{model}"] = Check(
            name, fusion_property("redundant", model), {"acc": (">", t.LEARNED)}
        )
    return checks


def checks() -> dict[str, Check]:
    from tests.data import test_learnable as learn
    from tests.fusion import test_synergy_torch as syn
    from tests.research import test_pair_training_torch as pair

    drop = {"loss_drop": (">", 0.0)}
    pair_test = "tests/research/test_pair_training_torch.py"
    return {
        "match": Check(
            f"{pair_test}::test_match_task_trains_face_and_voice_into_one_space",
            match,
            {"subject_mean": (">", pair.MATCH_BAR), **drop},
        ),
        "siamese": Check(
            f"{pair_test}::test_pair_loss_trains_without_classifier...[siamese]", pair_torch("siamese"), drop
        ),
        "triplet": Check(
            f"{pair_test}::test_pair_loss_trains_without_classifier...[triplet]", pair_torch("triplet"), drop
        ),
        "siamese_jax": Check(
            "tests/research/test_pair_training_jax.py::test_siamese_run_reports_the_eer_of_its_embeddings",
            siamese_jax,
            drop,
            backend="jax",
        ),
        **fusion_checks(),
        "synergy_early": Check(
            "tests/fusion/test_synergy_torch.py::test_token_fusion_learns_synergy[early]",
            synergy("early", layers=1, heads=4, dropout=0.0),
            {"acc": (">", syn.LEARNED)},
        ),
        "synergy_cross_attn": Check(
            "tests/fusion/test_synergy_torch.py::test_token_fusion_learns_synergy[cross_attn]",
            synergy("cross_attn", layers=1, heads=4, dropout=0.0),
            {"acc": (">", syn.LEARNED)},
        ),
        "synergy_late_mean": Check(
            "tests/fusion/test_synergy_torch.py::test_late_fusion_cannot_learn_synergy[mean]",
            synergy("late", combine="mean"),
            {"acc": ("<", syn.NEAR_CHANCE)},
        ),
        "synergy_late_product": Check(
            "tests/fusion/test_synergy_torch.py::test_late_fusion_cannot_learn_synergy[product]",
            synergy("late", combine="product"),
            {"acc": ("<", syn.NEAR_CHANCE)},
        ),
        "learnable": Check(
            "tests/data/test_learnable.py (both tests)",
            learnable,
            {"identity_min": (">", learn.IDENTITY_BAR), "group_min": (">", learn.GROUP_BAR)},
        ),
        "margin_geometry": Check(
            "tests/losses/test_margin_geometry_torch.py (all tests)", margin_geometry, margin_bars()
        ),
        "attack": Check(
            "tests/experiments/test_attack_torch.py (the accuracy bars)",
            attack,
            {
                "clean_acc": (">", 0.3),
                "fgsm_face_drop": (">", 0.05),
                "pgd_face_drop": (">", 0.05),
                "fgsm_voice_drop": (">", 0.0),
            },
        ),
    }


# name -> (environment additions, torch threads (0: torch's default), seed offset, backends it applies to)
VARIATIONS = {
    "as in CI": ({}, 0, 0, ("torch", "jax")),
    "1 thread": ({"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, 1, 0, ("torch", "jax")),
    "OMP 1": ({"OMP_NUM_THREADS": "1"}, 0, 0, ("torch", "jax")),
    "no fast math": ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}, 0, 0, ("jax",)),
    "seed +1": ({}, 0, 1, ("torch", "jax")),
    "seed +2": ({}, 0, 2, ("torch", "jax")),
    "seed +3": ({}, 0, 3, ("torch", "jax")),
}
MEASURE_TIMEOUT_S = 3600
GROUPS = {
    "threads": ("as in CI", "1 thread", "OMP 1", "no fast math"),
    "seeds": ("as in CI", "seed +1", "seed +2", "seed +3"),
}


def measure_once(name: str, offset: int, threads: int, data: Path) -> dict[str, float]:
    """One measurement, in this process (the child side of `run`)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(dir=data, prefix="work-") as work:  # beside the cached datasets
        return checks()[name].measure(offset, Path(work), data)


def run(name: str, variation: str, data: Path) -> dict[str, float] | None:
    """One measurement in a fresh process with the variation's environment; None (and its error) on a crash."""
    env_add, threads, offset, _ = VARIATIONS[variation]
    env = {**os.environ, **env_add}
    cmd = [sys.executable, __file__, "--one", name, "--offset", str(offset), "--threads", str(threads)]
    started = time.time()
    try:  # a hung measurement is a crash, not a stalled sweep (the slowest took 10 minutes at load 9)
        done = subprocess.run([*cmd, "--data-root", str(data)], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=MEASURE_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        print(f"# {name} ({variation}) timed out after {MEASURE_TIMEOUT_S} s", flush=True)
        return None
    if done.returncode != 0:
        print(f"# {name} ({variation}) crashed:\n{done.stderr[-2000:]}", flush=True)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"# {name} {variation} ({time.time() - started:.0f} s): {json.dumps(result)}", flush=True)
    return result


def margin(direction: str, bar: float, value: float) -> float:
    return value - bar if direction == ">" else bar - value


def report(name: str, check: Check, results: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"{name}  ({check.test})"]
    for stat, (direction, bar) in check.bars.items():
        values = {v: r[stat] for v, r in results.items()}
        if not values:
            continue
        worst = min(margin(direction, bar, x) for x in values.values())
        cells = "  ".join(f"{v} {x:.4g}" for v, x in values.items())
        verdict = "ok" if worst > 0 else "CROSSES THE BAR"
        lines.append(f"  {stat} {direction} {bar:g}: {cells}  | worst margin {worst:+.4g} {verdict}")
    return lines


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The margins table of docs/testing.md from measurements (check -> variation -> statistics)."""
    lines = ["| check | statistic | bar | measured (min - max) | worst margin | variations |", "|---" * 6 + "|"]
    for name, check in checks().items():
        by_variation = results.get(name, {})
        for stat, (direction, bar) in check.bars.items():
            values = [r[stat] for r in by_variation.values() if stat in r]
            if not values:
                continue
            worst = min(margin(direction, bar, x) for x in values)
            cells = [name, stat, f"{direction} {bar:g}", f"{min(values):.4g} - {max(values):.4g}", f"{worst:+.4g}"]
            lines.append("| " + " | ".join([*cells, ", ".join(by_variation)]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checks", default="", help="comma-separated check names (default: all)")
    parser.add_argument("--variations", default="", help="comma-separated variation names, or 'threads' / 'seeds'")
    parser.add_argument("--list", action="store_true", help="print the checks and their tests, then exit")
    parser.add_argument("--json", default="", help="also write every measurement to this file")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the Markdown table of these --json files")
    parser.add_argument("--data-root", default="", help="where datasets are cached (default: a temporary folder)")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # child: measure one check, print JSON
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_once(args.one, args.offset, args.threads, Path(args.data_root))))
        return
    if args.table:
        merged = {}
        for path in args.table:
            for name, by_variation in json.loads(Path(path).read_text()).items():
                merged.setdefault(name, {}).update(by_variation)
        print("\n".join(markdown(merged)))
        return
    chosen = checks()
    if args.list:
        for name, check in chosen.items():
            print(f"{name:<24} {check.backend:<6} {check.test}")
        return
    if args.checks:
        chosen = {n: chosen[n] for n in args.checks.split(",")}
    names = [v for part in args.variations.split(",") if part for v in GROUPS.get(part, (part,))] or list(VARIATIONS)
    all_results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data_root or tmp)
        for name, check in chosen.items():
            variations = [v for v in dict.fromkeys(names) if check.backend in VARIATIONS[v][3]]
            results = {}
            for variation in variations:
                if (result := run(name, variation, data)) is not None:
                    results[variation] = result
            all_results[name] = results
            print("\n".join(report(name, check, results)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main()
