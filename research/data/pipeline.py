"""The input pipeline: the batches of one split and epoch as a Grain dataset, framework-free (NumPy out).

    order (permutation of (seed, epoch), or P x K batches with data.sampler = pk; one shard per rank)
      -> Read      decode one sample from its source (files, packed shards or the in-memory cache)
      -> Frame     a video face's frame: random in training, k copies in evaluation (data.face_frames; frames.py)
      -> Recording training augmentation of the whole sample: voice speed, face ops (data.augment; augment.py)
      -> Tokenise  transcript -> token ids and mask (the cache holds them tokenised already)
      -> Crop      voice cut to S samples at an offset fixed by (seed, epoch, sample), zero-padded (crop.py;
                   evaluation keeps voices whole by default, padded per batch: eval.voice_seconds)
      -> Clip      training augmentation of the cropped voice: noise or reverberation, gain (data.augment)
      -> workers   (data.workers > 0: the steps above run in Grain's worker processes, CHUNK records at a time)
      -> Check     a bad file raises DataError, or is dropped and counted (data.on_error = skip)
      -> batch     stacked, with labels and presence flags looked up by sample index

Batching happens after the workers, so the batches do not depend on the number of workers. A bad file
travels as an error record, not as an exception: the same DataError is raised in the main process
whatever the worker count, and a worker never dies on an exception it cannot send back. The iterator's
state (`Batches.get_state`) goes into a checkpoint; `set_state` resumes mid-epoch with exactly the
remaining batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import grain
import numpy as np
from absl import flags

from research.config import MODALITIES, PerturbConfig
from research.data import augment, augment_plan, frames, perturb, sampler
from research.data.crop import Crop, longest_first, padded
from research.data.manifest import DataError
from research.data.sources import MemorySource, Stream
from research.data.text import Tokenizer

log = logging.getLogger(__name__)
Trials = tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, j, target) indices into one SampleSet, (T,) each
# Grain (with jax installed) reads an absl flag when it starts workers; a program not run by absl.app has
# not parsed its flags, which would make every worker fail.
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

# Records (a face, a cropped voice) are small: workers send them through a pipe; shared memory is freed
# asynchronously and can outlive the interpreter (leaked shared_memory warnings at exit).
OPTIONS = grain.experimental.DatasetOptions(min_shm_size=1 << 24)
_LOCAL = threading.local()
CHUNK = 16  # consecutive records read and sent by a worker at a time: one transfer per chunk, not per record


@dataclass
class SampleSet:
    """The decoded samples of one split. Missing modalities are zeros with `present[m]` False."""

    ids: list[str]
    face: np.ndarray | None  # (N, 3, H, W) uint8; face, voice and text are None when `stream` is set
    voice: list[np.ndarray] | None  # N float32 waveforms of any length (empty when missing)
    text_ids: np.ndarray | None  # (N, L) int64
    text_mask: np.ndarray | None  # (N, L) bool
    present: dict[str, np.ndarray]  # modality -> (N,) bool
    label: dict[str, np.ndarray]  # identity, age, gender, group, subject, attributes, target -> (N,) int64
    voice_samples: int  # S: voices are cropped or zero-padded to this many samples (evaluation: see `batches`)
    trials: dict[str, Trials] = field(default_factory=dict)  # official trial lists whose samples are all here
    stream: Stream | None = None  # data.cache = false: samples are decoded when the pipeline reads them
    workers: int = 0  # data.workers: processes that read samples
    perturb: PerturbConfig | None = None  # data.perturb, set on the training split (research/data/perturb.py)
    pk: tuple[int, int] | None = None  # data.sampler = pk: (P, K), set on the training split (research/data/sampler.py)
    augment: augment_plan.Plan | None = None  # data.augment, set on the training split when on (augment.py)
    sample_rate: int = 16000  # data.sample_rate: whole voices are padded to buckets of seconds (research/data/crop.py)
    videos: frames.Videos | None = None  # faces read from videos when the pipeline reads the sample (frames.py)

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, name: str) -> np.ndarray:
        """Class indices (N,) int64 of one label; -1 = unknown (identity: unseen in training)."""
        return self.label[name]

    def batches(self, batch_size: int, *, shuffle: bool, seed: int, epoch: int, train: bool, **kw) -> Batches:
        """Batches in an order fixed by (seed, epoch); train=True crops voices at random, else at the start.
        Read through this input pipeline (`batches` below: rank / world pick one rank's shard, voice_samples
        = 0 evaluates whole voices)."""
        return batches(
            self, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, train=train, workers=self.workers, **kw
        )


class Read(grain.transforms.Map):
    def __init__(self, source: Sequence[dict]) -> None:
        self.source = source

    def map(self, index: np.int64) -> dict:
        return {"index": np.int64(index), **self.source[int(index)]}


class Tokenise(grain.transforms.Map):
    def __init__(self, tokenizer: str, length: int) -> None:
        self.path, self.length = tokenizer, length

    def map(self, record: dict) -> dict:
        if "text" not in record:  # an error record
            return record
        text = record.pop("text")
        if text is None:
            return record | {"text_ids": np.zeros(self.length, np.int64), "text_mask": np.zeros(self.length, bool)}
        ids, mask = _tokenizer(self.path).encode([text], self.length)  # (1, L) each
        return record | {"text_ids": ids[0], "text_mask": mask[0]}


def _tokenizer(path: str) -> Tokenizer:
    """One tokenizer per thread (Grain reads with threads; encoding sets the tokenizer's padding state)."""
    loaded = _LOCAL.__dict__.setdefault("tokenizers", {})
    if path not in loaded:
        loaded[path] = Tokenizer(path)
    return loaded[path]


class Unchunk(grain.experimental.FlatMapTransform):
    max_fan_out = CHUNK

    def flat_map(self, chunk: list[dict]) -> list[dict]:
        return chunk


class Check(grain.transforms.Filter):
    """In the main process: raise a record's DataError, or drop and count it (on_error = skip)."""

    def __init__(self, on_error: str) -> None:
        self.on_error, self.problems = on_error, []

    def filter(self, record: dict) -> bool:
        if "error" not in record:
            return True
        if self.on_error == "raise":
            raise DataError(record["error"])
        self.problems.append(record["error"])
        return False


class Collate:
    """Stack records into the loader's batch dict; presence and labels come from the split by sample index.
    Evaluation batches (train=False) also carry each sample's `index` into the split, and whole voices are
    zero-padded to the batch's bucket (research/data/crop.py)."""

    def __init__(self, data: SampleSet, train: bool, whole_voices: bool) -> None:
        self.present, self.label, self.train, self.whole = data.present, data.label, train, whole_voices
        self.rate = data.sample_rate
        self.speed_classes = data.augment.classes if data.augment is not None else 0  # data.speed_perturb_labels

    def __call__(self, records: Sequence[dict]) -> dict[str, np.ndarray]:
        idx = np.array([r["index"] for r in records], dtype=np.int64)  # (B,)
        voices = [r["voice"] for r in records]
        batch = {
            "face": np.stack([r["face"] for r in records]).astype(np.float32) / 255.0,  # (B, 3, H, W)
            "voice": padded(voices, self.rate) if self.whole else np.stack(voices),  # (B, S)
            "voice_len": np.array([r["voice_len"] for r in records], dtype=np.int64),
            "text_ids": np.stack([r["text_ids"] for r in records]),  # (B, L)
            "text_mask": np.stack([r["text_mask"] for r in records]),
        }
        batch |= {f"{m}_present": self.present[m][idx] for m in MODALITIES}
        batch |= {name: values[idx] for name, values in self.label.items()}
        if not self.train:
            batch["index"] = idx
        if self.speed_classes and "speed" in records[0]:  # speed copies are new classes (augment.relabel)
            augment.relabel(batch, np.array([r["speed"] for r in records]), self.speed_classes)
        return batch


class Batches:
    """The batches of one epoch: an iterator with get_state / set_state (mid-epoch resume) and close.

    Close it (or use `with`) when done early: with workers, Grain's processes and shared memory live
    until then. It closes itself when exhausted.
    """

    def __init__(self, dataset: grain.IterDataset, check: Check, total: int) -> None:
        self._it = None  # set first: __del__ runs even when iter() fails
        self._check, self._total = check, total
        self._it = iter(dataset)

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            raise StopIteration
        try:
            return next(self._it)
        except StopIteration:
            self._report()
            self.close()
            raise
        except BaseException:
            self.close()
            raise

    @property
    def skipped(self) -> int:
        """Samples dropped so far for unreadable files (data.on_error = skip)."""
        return len(self._check.problems)

    def get_state(self) -> dict:
        """Where the epoch stands, as plain JSON-able data for a checkpoint."""
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        """Continue from a `get_state()` of an iterator built with the same arguments (and worker count)."""
        self._it.set_state(state)

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _report(self) -> None:
        problems = self._check.problems
        if problems:
            shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
            log.warning("skipped %d of %d samples with unreadable files: %s", len(problems), self._total, shown)


def order(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """The sample indices one rank reads in an epoch: every `world`-th of the epoch's permutation, so the
    ranks' shards are disjoint, cover the epoch, and rank r's k-th batch is its part of global batch k."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    full = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    return full[rank::world]


def crop_fractions(n: int, seed: int, epoch: int) -> np.ndarray:
    """One uniform draw per sample of the split (N,), so a crop does not depend on batching or sharding."""
    return np.random.default_rng([seed, epoch, 1]).random(n)


def batches(
    data: SampleSet,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    train: bool,
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
    voice_samples: int | None = None,
) -> Batches:
    """The batches of `data` for one epoch; train=True crops voices at random, else at the start, to
    `voice_samples` (None: data.voice_samples). voice_samples = 0 (evaluation) keeps voices whole, read longest
    first within the rank's shard when their lengths are known (cached), each batch padded to its bucket."""
    stream = data.stream
    source = MemorySource(data.face, data.voice, data.text_ids, data.text_mask) if stream is None else stream.source
    fractions = crop_fractions(len(data), seed, epoch) if train else None
    if shuffle and data.pk is not None:  # data.sampler = pk: identity-balanced batches (research/data/sampler.py)
        global_batches = len(data) // (batch_size * world)
        shard = {"seed": seed, "epoch": epoch, "rank": rank, "world": world}
        indices = sampler.pk_order(data.labels("target"), *data.pk, global_batches, **shard)
    else:
        indices = order(len(data), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world=world)
    samples = data.voice_samples if voice_samples is None else voice_samples
    if samples == 0 and data.voice is not None:
        indices = longest_first(indices, np.array([len(v) for v in data.voice]))
    indices, frame = frames.reader(data.videos, indices, train, seed, epoch)  # evaluation: k copies of a video face
    ds = grain.MapDataset.source(indices).map(Read(source))
    if frame is not None:
        ds = ds.map_with_index(frame)
    plan = data.augment if train else None  # None: off, and no transform added (the batches of no augmentation)
    if plan is not None:
        ds = ds.map(augment.Recording(plan, seed, epoch, data.present["face"]))
    if train and data.perturb is not None and perturb.enabled(data.perturb):  # the defence of data.perturb
        ds = ds.map(perturb.Perturb(data.perturb, seed, perturb.copy_of(len(data), data.perturb.copies, seed, epoch)))
    if stream is not None:
        ds = ds.map(Tokenise(stream.tokenizer, stream.text_len))
    ds = ds.map(Crop(fractions, samples))
    if plan is not None:
        ds = ds.map(augment.Clip(plan, seed, epoch))
    ds = ds.batch(CHUNK, batch_fn=list).to_iter_dataset()
    ds = grain.experimental.WithOptionsIterDataset(ds, OPTIONS)  # before the workers: they read it
    if workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    ds = grain.experimental.FlatMapIterDataset(ds, Unchunk())
    check = Check("raise" if stream is None else stream.on_error)
    ds = ds.filter(check).batch(batch_size, batch_fn=Collate(data, train, whole_voices=samples == 0))
    return Batches(ds, check, len(indices))
