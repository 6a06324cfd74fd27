"""What the training split's augmentation draws from, framework-free and without Grain (so that research/validate.py
can check the folders before any framework is imported): the per-op random streams, the speeds, the plan with the
MUSAN and RIRS_NOISES file lists, and the check of those files (research/data/augment.py applies them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from research.config import AugmentConfig, ConfigError, DataConfig
from research.data.manifest import DataError

STREAMS = {"voice": 3, "gain": 4, "speed": 5, "face": 6, "frame": 7}  # 1: crop (pipeline.py), 2: perturb.py
SPEEDS = (1.0, 0.9, 1.1)  # WeSpeaker's order: copy k of class c is class c + k C (data.speed_perturb_labels)
CATEGORIES = ("noise", "music", "speech")  # MUSAN's folders; speech is mixed as babble


def enabled(cfg: AugmentConfig) -> bool:
    probs = (cfg.noise_prob, cfg.reverb_prob, cfg.gain_prob, cfg.speed_prob, cfg.flip_prob, cfg.crop_prob)
    return any(p > 0 for p in probs) or cfg.jitter_prob > 0 or cfg.face_policy != "none"


def stream(seed: int, epoch: int, index: int, op: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, STREAMS[op]])


@dataclass(frozen=True)
class Plan:
    """What the training split's augmentation needs: the config, the files it draws from, the label shift."""

    cfg: AugmentConfig
    sample_rate: int
    classes: int  # C: speed copies are classes c + k C (data.speed_perturb_labels); 0 = labels unchanged
    noises: dict[str, tuple[str, ...]]  # MUSAN category -> its files, sorted
    rirs: tuple[str, ...]  # impulse responses, sorted


def plan(cfg: DataConfig, classes: int) -> Plan | None:
    """The training split's Plan (None when augmentation is off); ConfigError on a missing or empty folder."""
    a = cfg.augment
    if not enabled(a):
        return None
    noises = noise_files(a.musan) if a.noise_prob > 0 else {}
    rirs = rir_files(a.rirs) if a.reverb_prob > 0 else ()
    return Plan(a, cfg.sample_rate, classes if cfg.speed_perturb_labels else 0, noises, rirs)


def _wavs(folder: Path) -> tuple[str, ...]:
    """Sorted, so that a draw picks the same file whatever order the file system lists them in."""
    return tuple(sorted(str(p) for p in folder.rglob("*.wav")))


def noise_files(folder: str) -> dict[str, tuple[str, ...]]:
    """MUSAN's `noise/`, `music/`, `speech/` (**/*.wav): the categories present, each with its files."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"data.augment.musan: no folder at '{folder}' (give the MUSAN folder)")
    found = {c: _wavs(root / c) for c in CATEGORIES if (root / c).is_dir()}
    if not found:
        raise ConfigError(f"data.augment.musan: {root} has no noise/, music/ or speech/ folder (the MUSAN layout)")
    for category, files in found.items():
        if not files:
            raise ConfigError(f"data.augment.musan: no .wav file under {root / category}")
    return found


def rir_files(folder: str) -> tuple[str, ...]:
    """RIRS_NOISES' simulated room impulse responses (simulated_rirs/**/*.wav)."""
    if not Path(folder).is_dir():
        raise ConfigError(f"data.augment.rirs: no folder at '{folder}' (give the RIRS_NOISES folder)")
    files = _wavs(Path(folder) / "simulated_rirs")
    if not files:
        raise ConfigError(f"data.augment.rirs: no .wav file under {Path(folder) / 'simulated_rirs'}")
    return files


def check(cfg: DataConfig) -> None:
    """Before training (research/validate.py): the folders of the enabled voice augmentations hold readable WAVs.
    Reads every file's header (a few seconds for the 60 000 files of RIRS_NOISES); DataError names a bad file."""
    p = plan(cfg, 0)
    for path in [] if p is None else [*(f for files in p.noises.values() for f in files), *p.rirs]:
        try:
            frames = soundfile.info(path).frames
        except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
            raise DataError(f"unreadable augmentation file {path}: {err}") from None
        if frames == 0:
            raise DataError(f"augmentation file {path} has no samples")
