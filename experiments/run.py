"""Train and evaluate one fusion model.

    python experiments/run.py --fusion cross_attn                     # embedded dataset, CPU
    python experiments/run.py --config synergy --fusion late --optim.lr=3e-4
    python experiments/run.py --help                                  # every key, default and choice

Arguments are `--key=value` or `--key value`, where key is a dotted config field (research/config.py) or
a short flag (--fusion, --loss, --backend, --modalities, --dataset, --seed, --epochs, --lr). This is
also the form `wandb agent` passes sweep parameters in. `--config NAME` (first) picks a preset from
experiments/configs/. Rerunning with the same --run.name resumes an interrupted run.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for experiments.configs

from experiments.configs import preset  # noqa: E402
from research import backend, tracking, validate  # noqa: E402
from research.checkpoint_files import CheckpointError  # noqa: E402
from research.config import Config, ConfigError  # noqa: E402
from research.config_parse import SHORT_FLAGS, apply_overrides  # noqa: E402
from research.data.manifest import DataError  # noqa: E402
from research.huge_pages import use_huge_pages  # noqa: E402
from research.rundir import RunDirBusy  # noqa: E402


def parse(argv: list[str]) -> Config:
    """`--config NAME` (optional, first) then overrides, applied in order."""
    name = "default"
    if argv and argv[0].startswith("--config"):
        key, eq, value = argv[0].partition("=")
        name, argv = (value, argv[1:]) if eq else (argv[1] if len(argv) > 1 else "", argv[2:])
    module = f"experiments.configs.{name}"
    try:
        cfg = preset(name)
    except ModuleNotFoundError as err:
        if not (module == err.name or module.startswith(f"{err.name}.")):
            raise  # the preset exists; an import inside it failed
        raise ConfigError(f"unknown preset '{name}' (see experiments/configs/)") from None
    return apply_overrides(cfg, argv)


def run_name(cfg: Config) -> str:
    mods = "+".join(sorted(cfg.model.modalities))
    return f"{cfg.model.fusion}-{cfg.loss.name}-{mods}-s{cfg.run.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def usage(node, prefix: str = "") -> list[str]:
    """One line per config key: `--key (type) = default`."""
    lines = []
    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            lines += usage(value, f"{prefix}{f.name}.")
            continue
        hint = hints[f.name]
        kind = "|".join(map(str, typing.get_args(hint))) if typing.get_origin(hint) is typing.Literal else str(hint)
        lines.append(f"  --{prefix}{f.name} = {value!r}   ({kind.replace('typing.', '')})")
    return lines


def device_problem(backend: str):
    """The backend's check of run.device (torch places the model on it; jax uses every device it sees)."""
    return importlib.import_module("research.torch.predict").device_problem if backend == "torch" else None


def print_results(summary: dict, run_dir: Path) -> None:
    keys = [k for k in summary if k.split("/")[0] in ("val", "test") and k.count("/") == 1]
    keys += [k for k in summary if k.startswith("test/without_")]  # the test-time modality ablation
    keys += ["params", "best_epoch", "wall_time_s"]
    width = max(len(k) for k in keys)
    print("\nresults")
    for k in keys:
        if k in summary:
            v = summary[k]
            print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    print(f"\nrun files: {run_dir}  (record.json, best.safetensors, eval/, wandb/)")


def dry_run(cfg: Config, run_dir: Path) -> int:
    """--run.dry_run=true: the model card (research/model_card.py) instead of training."""
    # Imported here, not above: the data loader imports grain, which imports jax, and a config error must stay a
    # line printed before any framework is imported (tests/experiments/test_run_failures_jax.py).
    from research.model_card import card_table, model_card, write_card

    try:
        card, notes = model_card(cfg, backend.load(cfg.run.backend))
    except (DataError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("".join(f"weights: {note}\n" for note in notes) + card_table(cfg, card))
    print(f"written: {write_card(run_dir, card)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        print("short flags: " + ", ".join(f"--{k} -> {v}" for k, v in SHORT_FLAGS.items()))
        print("keys (the main job's defaults, experiments/configs/default.py):\n" + "\n".join(usage(preset("default"))))
        return 0
    try:
        cfg = parse(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = cfg.run.name or run_name(cfg)
    run_dir = Path(cfg.run.out) / name
    try:  # every user error is one line before any set-up (research/validate.py)
        validate.before_training(cfg, device_problem(cfg.run.backend))
        validate.check_resume(cfg, run_dir)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.run.dry_run:
        return dry_run(cfg, run_dir)
    trainer = importlib.import_module(f"research.{cfg.run.backend}.trainer")
    print(f"run {name} ({cfg.model.fusion} fusion of {', '.join(cfg.model.modalities)}; backend {cfg.run.backend})")
    try:
        summary = trainer.train_and_evaluate(cfg, run_dir, name)
    except Exception as err:
        tracking.mark_failed(run_dir, err)  # a record this process left "running" says why it stopped
        # Bad data, a busy or unusable run directory, a checkpoint that cannot be read or written (a full disk):
        # the message names the file or directory, and a traceback adds nothing.
        if isinstance(err, (DataError, RunDirBusy, CheckpointError)):
            print(f"error: {err}", file=sys.stderr)
            return 2
        if isinstance(err, trainer.NonFiniteLoss):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    if summary.get("status") == "worker":  # a torchrun rank > 0: rank 0 reports
        return 0
    if summary.get("status") == "interrupted":
        print(f"stopped after epoch {summary['epoch']}; rerun with --run.name={name} to resume")
        return 0
    print_results(summary, run_dir)
    return 0


if __name__ == "__main__":
    use_huge_pages()
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, leave without interpreter finalisation: a gloo thread may still be freeing the last
        # collective's tensors, and one that asks for the GIL during finalisation aborts the process.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
