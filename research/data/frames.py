"""Faces from video: which frame a read takes of a row whose face is a video without a `frame` (decode.is_video),
framework-free (docs/data.md, "Faces from video").

- Training: one frame at a time uniform over the video's duration, drawn from (seed, epoch, sample index) by its own
  random stream (augment_plan.STREAMS["frame"]), so a resumed run, any worker count or batching takes the same frame,
  and each epoch another one.
- Evaluation: k = data.face_frames frames at the centres of k equal parts of the video, (j + 1/2) / k x its duration
  for j = 0 .. k-1 (k = 1: the middle frame). Each frame is a copy of the sample in the evaluation batches, with
  the sample's `index`; research/predictions.py averages the copies' embeddings into the sample's.

The frame is read with a seek to the key frame before it (decode.read_face), not by decoding the whole video. A
cached split holds each video's middle frame, decoded when the data was loaded; the pipeline reads the frames of
training and of k > 1 from the files (`Frame`, in the worker processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grain
import numpy as np

from research.data.augment_plan import stream
from research.data.decode import is_video, read_face
from research.data.manifest import DataError, Row, numbers


@dataclass(frozen=True)
class Video:
    path: Path
    box: list[float] | None  # [x, y, w, h] in pixels of the frame
    where: str  # the row, for error messages


@dataclass(frozen=True)
class Videos:
    """A split's video faces: sample index -> its video, the face size, data.face_frames, whether cached."""

    items: dict[int, Video]
    size: int  # data.image_size
    frames: int  # data.face_frames: evaluation embeds each video face at this many frames
    cached: bool  # the split's cache holds every video's middle frame (evaluation with frames = 1 reads nothing)

    def needed(self, train: bool) -> bool:
        """Whether the pipeline reads frames from the files: training, an uncached split or k > 1."""
        return bool(self.items) and (train or not self.cached or self.frames > 1)


def videos(folder: Path, rows: list[Row], size: int, frames: int, cached: bool, name: str) -> Videos | None:
    """The video faces among a split's rows (in sample order; paths relative to `folder`), or None. `name` says
    where the rows come from in error messages (a manifest)."""
    items = {
        i: Video(folder / r.face, numbers(r.box) or None, f"{name} line {r.line}, sample '{r.id}'")
        for i, r in enumerate(rows)
        if is_video(r)
    }
    return Videos(items, size, frames, cached) if items else None


def centres(k: int) -> np.ndarray:
    """Where evaluation reads its k frames, as fractions of the duration: the centres of k equal parts (k,)."""
    return (np.arange(k) + 0.5) / k


def expand(indices: np.ndarray, v: Videos) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation order with each video face repeated k times, next to each other (same voice length, so the same
    bucket): (sample index (M,), part j of k that copy reads (M,)); other samples once, part 0."""
    counts = np.array([v.frames if int(i) in v.items else 1 for i in indices], dtype=np.int64)
    parts = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    return np.repeat(indices, counts), parts


def reader(v: Videos | None, order: np.ndarray, train: bool, seed: int, epoch: int) -> tuple[np.ndarray, Frame | None]:
    """The order the pipeline reads (evaluation: `expand`ed) and its Frame transform (None: no frame to read)."""
    if v is None or not v.needed(train):
        return order, None
    if train:
        return order, Frame(v, seed, epoch, None)
    order, parts = expand(order, v)
    return order, Frame(v, seed, epoch, parts)


class Frame(grain.transforms.MapWithIndex):
    """Reads a video face's frame into the record: training at the epoch's random time, evaluation at the centre of
    its part (`parts`, by position in the expanded order)."""

    def __init__(self, v: Videos, seed: int, epoch: int, parts: np.ndarray | None) -> None:
        self.v, self.seed, self.epoch, self.parts = v, seed, epoch, parts

    def map_with_index(self, position: int, record: dict) -> dict:
        i = int(record["index"])
        video = self.v.items.get(i)
        if video is None or "error" in record:
            return record
        if self.parts is None:
            at = stream(self.seed, self.epoch, i, "frame").random()  # uniform in [0, 1)
        else:
            at = centres(self.v.frames)[self.parts[position]]
        try:
            face = read_face(video.path, self.v.size, video.box, at=float(at))  # (3, H, W) uint8
        except DataError as err:  # travels as an error record (pipeline.Check), as a bad file of the source does
            return {"index": record["index"], "error": f"{err} ({video.where})"}
        return record | {"face": face}
