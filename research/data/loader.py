"""Load a manifest into memory and serve batches as dicts of NumPy arrays.

With data.cache (the default) every file is decoded once, eagerly, when the data is loaded, so a bad
file fails before training; the decoded arrays stay in memory. Without it, or from packed shards, the
input pipeline (research/data/pipeline.py) decodes a sample when it reads it; batches always come
through that pipeline. Batch order, voice crops and the training split's augmentation (data.augment,
research/data/augment.py) are a pure function of (seed, epoch, sample), which is what makes a resumed run see
exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from research.config import MODALITIES, DataConfig
from research.data import augment, augment_plan, frames, manifest, pack, synthetic
from research.data.decode import Decoded, decode_row
from research.data.manifest import SPLITS, DataError, Meta, Row
from research.data.pipeline import SampleSet, Trials
from research.data.sources import FileSource, Stream
from research.data.text import Tokenizer

__all__ = ["SampleSet", "Splits", "load"]  # SampleSet: the pipeline's input type

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: SampleSet
    val: SampleSet
    test: SampleSet
    classes: dict[str, list[str]]  # label name -> class names (index = position)
    skipped: int  # samples dropped for unreadable files (data.on_error = "skip")
    vocab_size: int


def load(cfg: DataConfig) -> Splits:
    """Read the manifest of cfg.dataset ("synthetic" is generated and cached first) and decode it all
    (data.cache), or leave the decoding to the pipeline's reads (data.cache = false, or packed shards)."""
    path = synthetic.ensure(cfg) if cfg.dataset == "synthetic" else Path(cfg.dataset)
    rows, meta = manifest.read(path), manifest.read_meta(path)
    if cfg.split == "open" and rows[0].open_split is None:
        raise DataError(f"manifest {path} has no open_split column: the open (identity-disjoint) split is unavailable")
    split_of = {r.id: r.split if cfg.split == "closed" else r.open_split for r in rows}
    classes = _classes(path, rows, meta, split_of, cfg.split)
    if cfg.target not in classes or cfg.target == "subject":
        names = ", ".join(c for c in classes if c != "subject")
        raise DataError(f"data.target '{cfg.target}' is not a label of manifest {path} (labels: {names})")
    index = {name: {c: i for i, c in enumerate(names)} for name, names in classes.items()}
    labels = {r.id: _labels(path, r, index, cfg.split == "open") for r in rows}
    if all(labels[r.id][cfg.target] < 0 for r in rows if split_of[r.id] == "train"):
        raise DataError(f"manifest {path}: no training sample has a known '{cfg.target}' (data.target)")
    plan = augment_plan.plan(cfg, len(classes["identity"]))  # the training split's augmentation (None: off)
    if cfg.speed_perturb_labels:  # speed copies are new identities, c + k C; val / test keep 0 .. C-1
        classes["identity"] = augment.speed_classes(classes["identity"])
    streamed = not cfg.cache or pack.is_packed(path)  # else decode it all now, into memory
    samples, problems = ([], []) if streamed else _decode_all(path, rows, cfg)
    if problems:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        log.warning("skipped %d of %d samples of %s with unreadable files: %s", len(problems), len(rows), path, shown)
    tokenizer = Tokenizer(cfg.tokenizer)
    sets = {}
    for split in SPLITS:
        if streamed:
            chosen = [r for r in rows if split_of[r.id] == split]
            arrays = _streamed(path, chosen, cfg)
        else:
            decoded = [s for s in samples if split_of[s.row.id] == split]
            arrays, chosen = _cached(decoded, cfg, tokenizer), [s.row for s in decoded]
        how = {"cached": not streamed, "name": f"manifest {path}"}
        arrays["videos"] = frames.videos(path.parent, chosen, cfg.image_size, cfg.face_frames, **how)
        trials = _trials(path, meta, arrays["ids"], {r.id for r in rows})
        sets[split] = _sample_set(split, arrays, labels, list(classes), trials, cfg, plan if split == "train" else None)
    return Splits(**sets, classes=classes, skipped=len(problems), vocab_size=tokenizer.vocab_size)


def _classes(path: Path, rows: list[Row], meta: Meta, split_of: dict[str, str], split: str) -> dict[str, list[str]]:
    """Class names per label: identities are those of the training split; an attribute's classes are the
    sidecar's list (age and gender default to the project's), else its values in training (group) or
    in the whole manifest (other attributes)."""
    train = [r for r in rows if split_of[r.id] == "train"]
    if not train:
        raise DataError(f"manifest {path} has no training samples in the {split} split")
    if split == "open":
        parts: dict[str, set[str]] = {}
        for r in rows:
            parts.setdefault(r.subject, set()).add(r.open_split)
        for subject, seen in parts.items():
            if len(seen) > 1:
                raise DataError(f"manifest {path}: subject '{subject}' is in several open splits ({sorted(seen)})")
    classes = {"identity": sorted({r.subject for r in train}, key=_natural)}
    for name in ("age", "gender", "group", *sorted({a for r in rows for a in r.attributes})):
        found = meta.class_list(name)
        if found is None:
            values = {_value(r, name) for r in (train if name == "group" else rows)} - {""}
            found = sorted(values, key=_natural)
        classes[name] = found
    classes["subject"] = sorted({r.subject for r in rows}, key=_natural)
    return classes


def _value(row: Row, name: str) -> str:
    """A row's value of a label column: age, gender, group or an attribute ("" = unknown)."""
    return getattr(row, name) if name in ("age", "gender", "group") else row.attributes.get(name, "")


def _labels(path: Path, row: Row, index: dict[str, dict[str, int]], open_set: bool) -> dict[str, int]:
    """Class indices of one row (-1 = unknown). Unseen identities are -1 in the open split and an error in
    the closed one."""
    where = f"manifest {path} line {row.line}"
    if row.group not in index["group"]:
        raise DataError(f"{where}: group '{row.group}' does not occur in the train split")
    if row.subject not in index["identity"] and not open_set:
        raise DataError(f"{where}: subject '{row.subject}' does not occur in the train split")
    found = {"identity": index["identity"].get(row.subject, -1), "subject": index["subject"][row.subject]}
    for name in index.keys() - {"identity", "subject"}:
        value = _value(row, name)
        if value and value not in index[name]:  # the manifest reader checked listed classes already
            raise DataError(f"{where}: unknown {name} '{value}'")
        found[name] = index[name].get(value, -1)
    return found


def _trials(path: Path, meta: Meta, ids: list[str], known: set[str]) -> dict[str, Trials]:
    """The official trial lists of the sidecar whose samples are all in this split, as index arrays."""
    position = {sample: k for k, sample in enumerate(ids)}
    found = {}
    for name, pairs in meta.trials.items():
        for t, (_, a, b) in enumerate(pairs, start=1):
            for sample in (a, b):
                if sample not in known:
                    raise DataError(
                        f"{manifest.meta_path(path)}: trial {t} of list '{name}' names '{sample}', "
                        f"which is not in the manifest"
                    )
        if all(a in position and b in position for _, a, b in pairs):
            i = np.array([position[a] for _, a, _ in pairs], dtype=np.int64)
            j = np.array([position[b] for _, _, b in pairs], dtype=np.int64)
            found[name] = (i, j, np.array([t == 1 for t, _, _ in pairs], dtype=bool))
    return found


def _decode_all(path: Path, rows: list[Row], cfg: DataConfig) -> tuple[list[Decoded], list[str]]:
    """Decode every row's files -> (samples, problems); raise on a bad file, or skip it and say why."""
    samples, problems = [], []
    for row in rows:
        try:
            samples.append(decode_row(path.parent, row, cfg.image_size, cfg.sample_rate))
        except DataError as err:
            message = f"{err} (manifest {path} line {row.line}, sample '{row.id}')"
            if cfg.on_error == "raise":
                raise DataError(message) from None
            problems.append(message)
    return samples, problems


def _sample_set(
    split: str,
    arrays: dict,
    labels: dict[str, dict],
    names: list[str],
    trials: dict[str, Trials],
    cfg: DataConfig,
    plan: augment_plan.Plan | None,
) -> SampleSet:
    """One split's SampleSet from its samples' arrays (_cached or _streamed), labels and official trials."""
    label = {name: np.array([labels[i][name] for i in arrays["ids"]], dtype=np.int64) for name in names}
    label["target"] = label[cfg.target].copy()
    return SampleSet(
        **arrays,
        label=label,
        voice_samples=round(cfg.voice_seconds * cfg.sample_rate),
        sample_rate=cfg.sample_rate,
        trials=trials,
        workers=cfg.workers,
        perturb=cfg.perturb if split == "train" else None,
        pk=(cfg.pk_identities, cfg.pk_samples) if split == "train" and cfg.sampler == "pk" else None,
        augment=plan,
    )


def _cached(samples: list[Decoded], cfg: DataConfig, tokenizer: Tokenizer) -> dict:
    """The arrays of decoded samples, in memory (data.cache): missing modalities become zeros."""
    n, size = len(samples), cfg.image_size
    present = {m: np.array([getattr(s, m) is not None for s in samples], dtype=bool) for m in MODALITIES}
    face = np.zeros((n, 3, size, size), dtype=np.uint8)
    for i, s in enumerate(samples):
        if s.face is not None:
            face[i] = s.face
    text_ids = np.zeros((n, cfg.text_len), dtype=np.int64)
    text_mask = np.zeros((n, cfg.text_len), dtype=bool)
    if present["text"].any():
        texts = [s.text for s in samples if s.text is not None]
        text_ids[present["text"]], text_mask[present["text"]] = tokenizer.encode(texts, cfg.text_len)
    empty = np.zeros(0, dtype=np.float32)
    voice = [empty if s.voice is None else s.voice for s in samples]
    ids = [s.row.id for s in samples]
    return {"ids": ids, "face": face, "voice": voice, "text_ids": text_ids, "text_mask": text_mask, "present": present}


def _streamed(path: Path, rows: list[Row], cfg: DataConfig) -> dict:
    """The presence flags of rows whose samples are decoded when the pipeline reads them, and the source it
    reads: the packed shards of a packed manifest, else the rows' files."""
    present = {
        "face": np.array([bool(r.face) for r in rows], dtype=bool),
        "voice": np.array([bool(r.voice) for r in rows], dtype=bool),
        "text": np.array([bool(r.text or r.transcript) for r in rows], dtype=bool),
    }
    if pack.is_packed(path):  # packed video faces are their middle frames (no longer videos)
        source = pack.PackedSource(path, rows, cfg.image_size, cfg.sample_rate)
    else:  # video faces are read by the pipeline (frames.py)
        source = FileSource(path, rows, cfg.image_size, cfg.sample_rate, at=None)
    stream = Stream(source, cfg.tokenizer, cfg.text_len, cfg.on_error)
    nothing = {"face": None, "voice": None, "text_ids": None, "text_mask": None}
    return {"ids": [r.id for r in rows], **nothing, "present": present, "stream": stream}


def _natural(name: str) -> list:
    """Sort key that orders "g2" before "g10"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
