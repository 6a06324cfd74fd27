"""The checks that run before any training, for both backends: the config against the files, the machine
and the manifest.

`config_checks.validate` checks what the config alone decides (sizes, rates, the learning rate) when it is parsed;
this module checks what needs the outside world: paths that must exist, the device, and the manifest's rows
(the modalities it holds, the training split against the batch, the samples per subject that the
end-of-run evaluation needs). Every problem is a ConfigError naming the key, or a DataError naming the
manifest; run.py prints either as one line and exits 2 before anything is trained. Decoding every sample
is the loader's (data.cache decodes them all before the first step); a run that reads its samples while
training (data.cache=false) reads the result of `prepare.py check` instead.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from research import checkpoint_files
from research.config import MODALITIES, Config, ConfigError
from research.data import augment_plan, checked, manifest, synthetic
from research.data.manifest import DataError, Row
from research.data.text import tokenizer_file


def before_training(cfg: Config, device_problem: Callable[[str], str | None] | None = None) -> None:
    """Raise ConfigError (naming the key) or DataError (naming the manifest) at the first problem.

    `device_problem(run.device)` is the backend's word on the device: why it cannot be used, or None."""
    check_paths(cfg)
    augment_plan.check(cfg.data)  # the noise / impulse response folders of data.augment hold readable WAVs
    if device_problem is not None and (why := device_problem(cfg.run.device)):
        raise ConfigError(f"run.device={cfg.run.device}: {why}")
    path = synthetic.ensure(cfg.data) if cfg.data.dataset == "synthetic" else Path(cfg.data.dataset)
    rows = manifest.read(path)
    check_rows(cfg, path, rows)
    check_streamed_samples(cfg, path, rows)


def check_paths(cfg: Config) -> None:
    """data.tokenizer, model.text_path (text_hf), every model.init_from run and the backbone weight files exist."""
    try:
        tokenizer_file(cfg.data.tokenizer)
    except FileNotFoundError as err:
        raise ConfigError(f"data.tokenizer: {err}") from None
    text_path = Path(cfg.model.text_path)
    uses_hf = cfg.model.text == "text_hf" and "text" in cfg.model.modalities
    if uses_hf and cfg.model.text_path != "minilm" and not text_path.is_dir():
        raise ConfigError(f"model.text_path: no model folder at {text_path} (give 'minilm' or a local folder)")
    for run in map(Path, cfg.model.init_from):
        for name in ("record.json", "best.safetensors"):
            if not (run / name).is_file():
                raise ConfigError(f"model.init_from: {run / name} does not exist (give a finished run's folder)")
    for modality in ("face", "voice"):
        weights = getattr(cfg.model, f"{modality}_weights")
        if weights and modality in cfg.model.modalities and not Path(weights).is_file():
            raise ConfigError(f"model.{modality}_weights: no file at {weights} (docs/encoders.md says where to get it)")


def check_rows(cfg: Config, path: Path, rows: list[Row]) -> None:
    """The manifest's rows against the modalities, the batch and the evaluation protocol of the config."""
    split_of = {r.id: r.split if cfg.data.split == "closed" else r.open_split for r in rows}
    by_split = {s: [r for r in rows if split_of[r.id] == s] for s in manifest.SPLITS}
    train = by_split["train"]
    for m in cfg.model.modalities:
        if not any(_has(r, m) for r in train):
            held = ", ".join(x for x in MODALITIES if any(_has(r, x) for r in rows)) or "none"
            raise ConfigError(
                f"model.modalities: no training sample of manifest {path} has a {m} (its modalities: {held})"
            )
    if train and cfg.data.batch_size > len(train):
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} is larger than the {len(train)} training samples of {path}"
        )
    for split in ("val", "test"):
        _check_evaluation(cfg, path, split, by_split[split])


def check_streamed_samples(cfg: Config, path: Path, rows: list[Row]) -> None:
    """A run that reads its samples while training (data.cache=false) reads what `prepare.py check` found in
    them (research/data/checked.py): a bad sample is the loader's error, or with data.on_error=skip a counted
    skip; samples not checked are one warning line, as a large dataset must still train. The embedded dataset
    is generated here, and a cached run decodes every sample before the first step."""
    if cfg.data.cache or cfg.data.dataset == "synthetic":
        return
    d = cfg.data
    found = checked.problems(path, d.image_size, d.sample_rate)
    if found is None:
        print(
            f"warning: the samples of manifest {path} were not checked (data.cache=false: a bad one stops training "
            f"when it is read); check them with: python experiments/prepare.py check {path} "
            f"--image-size {d.image_size} --sample-rate {d.sample_rate}",
            file=sys.stderr,
        )
    elif found and d.on_error == "raise":
        raise DataError(found[0])
    elif found:
        print(
            f"warning: data.on_error=skip: {len(found)} of {len(rows)} samples of {path} are skipped, e.g. {found[0]}",
            file=sys.stderr,
        )


def _check_evaluation(cfg: Config, path: Path, split: str, rows: list[Row]) -> None:
    """Verification (open split) and face-voice matching (late fusion or the match task) draw pairs of samples
    of one subject and of two subjects: a split without them would fail after training."""
    where = f"data.split={cfg.data.split}: the {split} split of {path}"
    if cfg.data.split == "open" and not _pairs(rows):
        raise ConfigError(f"{where} needs a subject with two samples and two subjects for verification")
    mods = set(cfg.model.modalities)
    if (cfg.model.fusion == "late" or cfg.model.task == "match") and {"face", "voice"} <= mods:
        both = [r for r in rows if r.face and r.voice]
        if both and not _pairs(both):
            raise ConfigError(
                f"{where} needs a subject with two samples that have both a face and a voice, and two subjects, "
                f"for 1:2 face-voice matching (model.fusion={cfg.model.fusion})"
            )


def _pairs(rows: list[Row]) -> bool:
    """A subject with two samples and at least two subjects."""
    counts = Counter(r.subject for r in rows)
    return len(counts) >= 2 and max(counts.values()) >= 2


def _has(row: Row, modality: str) -> bool:
    return bool(row.transcript or row.text) if modality == "text" else bool(getattr(row, modality))


def check_resume(cfg: Config, run_dir: Path) -> None:
    """A rerun of a run resumes from its `last` checkpoint (or the copy before it). When neither opens, the run
    would fail after set-up; when neither is there and the record holds epochs, it would start over and rewrite
    that history. Both are one line before any work, asking for --run.resume=false (start over)."""
    record, last = run_dir / "record.json", run_dir / "last.safetensors"
    if not cfg.run.resume or not record.is_file():
        return
    problems = checkpoint_files.unreadable(last)
    if not problems:
        return
    advice = "rerun with --run.resume=false to start over (replacing its record), or give another --run.name"
    if checkpoint_files.exists(last):
        raise ConfigError(f"run.resume: no readable checkpoint to resume from ({'; '.join(problems)}); {advice}")
    try:
        epochs = len(json.loads(record.read_text(encoding="utf-8")).get("history", []))
    except (ValueError, AttributeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"run.resume: the run record {record} is not readable JSON; {advice}") from None
    if epochs:
        raise ConfigError(
            f"run.resume: {record} holds {epochs} epoch(s) but there is no checkpoint to resume from "
            f"({last.name} and {checkpoint_files.previous(last).name} are missing); {advice}"
        )
