"""Embeddings of files or manifest rows from a trained run (experiments/embed.py), framework-free: the inputs become
an evaluation split of decoded samples (labels unknown), the run's backend predicts it as the report does (whole
voices, research/predictions.py eval_batches), and one embedding is kept per input.

Which embedding (docs/evaluation.md, "Embedding files"):
- no modality named: the run's verification embedding of the sample with the modalities it has (a file of a
  folder has one: an audio file is a voice, an image a face, a .txt a transcript);
- `modality` m: late fusion, the m stream's embedding (the one its own head trained; the fused embedding is the
  streams' normalised concatenation); every other fusion, the fused embedding of the sample with its other
  modalities masked as missing, as the report's modality ablation (test/without_...) embeds it: that is the
  space the run's heads and verification use, which an encoder's pooled vector before fusion is not.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm import tqdm

from research.config import MODALITIES, Config
from research.data import frames, manifest
from research.data.decode import Decoded, decode_row
from research.data.manifest import DataError, Row
from research.data.pipeline import SampleSet
from research.data.text import Tokenizer

SUFFIXES = {  # a folder's files by suffix
    "voice": {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus"},
    "face": {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"},
    "text": {".txt"},
}


def folder_rows(folder: Path) -> list[Row]:
    """One row per audio, image or text file under `folder` (recursively, sorted), its id the path relative to the
    folder with / separators (`id10270/x6uYqmx31kE/00001.wav`, as trial lists name files)."""
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        kind = next((m for m, suffixes in SUFFIXES.items() if path.suffix.lower() in suffixes), None)
        if kind is not None:
            key = path.relative_to(folder).as_posix()
            empty = dict.fromkeys(MODALITIES, "")
            rows.append(Row(key, "", "test", None, **(empty | {kind: key}), age="", gender="", group=""))
    if not rows:
        raise DataError(
            f"{folder} holds no audio, image or text file ({', '.join(sorted(set().union(*SUFFIXES.values())))})"
        )
    return rows


def manifest_rows(path: Path, split: str | None, split_kind: str) -> list[Row]:
    """The rows of a manifest, or of one of its splits (`split_kind`: the run's data.split, closed or open)."""
    rows = manifest.read(path)
    if split is None:
        return rows
    column = "split" if split_kind == "closed" else "open_split"
    chosen = [r for r in rows if getattr(r, column) == split]
    if not chosen:
        raise DataError(f"manifest {path} has no row in the {split_kind} split '{split}'")
    return chosen


def subject_means(found: dict[str, np.ndarray], rows: list[Row]) -> dict[str, np.ndarray]:
    """One embedding per subject of `rows`: the plain mean of its rows' embeddings (`found`, keyed by row id), keyed
    by subject, as WeSpeaker's tools/vector_mean.py makes the AS-norm cohort (one vector per vox2_dev speaker)."""
    by_subject: dict[str, list[np.ndarray]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, []).append(found[row.id])
    return {subject: np.mean(vectors, axis=0).astype(np.float32) for subject, vectors in by_subject.items()}


def decode(folder: Path, rows: list[Row], cfg: Config, progress: bool = True) -> list[Decoded]:
    """Every row's files, decoded at the run's image size and sample rate; a bad file is a DataError naming it."""
    decoded = []
    for row in tqdm(rows, desc="decode", unit="file", disable=not progress):
        try:
            decoded.append(decode_row(folder, row, cfg.data.image_size, cfg.data.sample_rate))
        except DataError as err:
            raise DataError(f"{err} (input '{row.id}')") from None
    return decoded


def windowed(samples: list[Decoded], window: float, hop: float, rate: int) -> tuple[list[Decoded], np.ndarray]:
    """Each voice cut into windows of `window` s every `hop` s (the last one ends at the voice's end; a voice
    shorter than a window stays whole) -> (the windows as samples, the input each comes from (W,))."""
    size, step = round(window * rate), round(hop * rate)
    out, owner = [], []
    for k, s in enumerate(samples):
        n = 0 if s.voice is None else len(s.voice)
        starts = [0] if n <= size else sorted({*range(0, n - size, step), n - size})
        out += [s if s.voice is None else s._replace(voice=s.voice[a : a + size]) for a in starts]
        owner += [k] * len(starts)
    return out, np.array(owner, dtype=np.int64)


def sample_set(samples: list[Decoded], cfg: Config, keep: str | None, folder: Path | None = None) -> SampleSet:
    """Decoded samples as an evaluation split of unknown labels; `keep` names the only modality left present. Video
    faces (paths relative to `folder`) are embedded at data.face_frames frames (research/data/frames.py)."""
    n, d = len(samples), cfg.data
    present = {m: np.array([getattr(s, m) is not None and keep in (None, m) for s in samples]) for m in MODALITIES}
    face = np.zeros((n, 3, d.image_size, d.image_size), np.uint8)
    for i, s in enumerate(samples):
        face[i] = 0 if s.face is None else s.face
    text_ids, text_mask = np.zeros((n, d.text_len), np.int64), np.zeros((n, d.text_len), bool)
    texts = [s.text for s in samples if s.text is not None]
    if texts:
        has = np.array([s.text is not None for s in samples])
        text_ids[has], text_mask[has] = Tokenizer(d.tokenizer).encode(texts, d.text_len)
    voice = [np.zeros(0, np.float32) if s.voice is None else s.voice for s in samples]
    unknown = np.full(n, -1, np.int64)
    labels = {name: unknown for name in ("identity", "target", "subject", "age", "gender", "group")}
    rows, faces = [s.row for s in samples], folder is not None and keep in (None, "face")
    videos = frames.videos(folder, rows, d.image_size, d.face_frames, True, str(folder)) if faces else None
    return SampleSet(
        ids=[s.row.id for s in samples], face=face, voice=voice, text_ids=text_ids, text_mask=text_mask,
        present=present, label=labels, voice_samples=round(d.voice_seconds * d.sample_rate), sample_rate=d.sample_rate,
        videos=videos,
    )  # fmt: skip


class Progress:
    """A split read through a progress bar: `predict` reads it through `batches` as it reads a SampleSet."""

    def __init__(self, data: SampleSet, batch_size: int, enabled: bool) -> None:
        self.data, self.total, self.enabled = data, -(-len(data) // batch_size), enabled

    def batches(self, batch_size: int, **kw):
        with self.data.batches(batch_size, **kw) as batches:
            yield from tqdm(batches, total=self.total, desc="embed", unit="batch", disable=not self.enabled)


def chosen(preds: dict, cfg: Config, modality: str | None) -> np.ndarray:
    """The embedding kept per sample (module docstring): (N, E) float32."""
    if modality is not None and cfg.model.fusion == "late":
        return preds[f"{modality}_embedding"]
    return preds["embedding"]


def embed(backend: ModuleType, model, cfg: Config, device, samples: list[Decoded], **how) -> dict[str, np.ndarray]:
    """key -> (E,) float32 embedding of every decoded sample. `how`: modality (None or a modality of the run),
    window and hop (seconds; window 0 = whole voices), progress (bool), folder (the inputs' folder: video faces are
    embedded at data.face_frames frames, research/data/frames.py; None: at their middle frame)."""
    modality, window, hop = how.get("modality"), how.get("window", 0.0), how.get("hop", 0.0)
    if modality is not None and modality not in cfg.model.modalities:
        raise ValueError(f"--modality {modality}: the run's model has {', '.join(cfg.model.modalities)}")
    owner = np.arange(len(samples))
    parts = samples
    if window > 0:
        parts, owner = windowed(samples, window, hop or window, cfg.data.sample_rate)
    data = sample_set(parts, cfg, modality, how.get("folder"))
    usable = np.any([data.present[m] for m in cfg.model.modalities], axis=0)  # (W,)
    if not usable.all():
        names = ", ".join(parts[k].row.id for k in np.flatnonzero(~usable)[:3])
        raise DataError(
            f"{(~usable).sum()} inputs have none of the run's modalities ({', '.join(cfg.model.modalities)}): {names}"
        )
    preds = backend.predict(model, Progress(data, cfg.data.batch_size, how.get("progress", True)), cfg, device)
    found = chosen(preds, cfg, modality).astype(np.float32)  # (W, E)
    if window > 0:  # the mean of the windows' unit embeddings
        unit = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
        sums = np.zeros((len(samples), found.shape[1]), np.float64)
        np.add.at(sums, owner, unit)
        found = (sums / np.bincount(owner, minlength=len(samples))[:, None]).astype(np.float32)
    return {s.row.id: found[k] for k, s in enumerate(samples)}
