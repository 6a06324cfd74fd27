"""The input pipeline's sources: one that decodes a sample's files when it reads it (FileSource; research/data/decode.py
decode_row) and the in-memory cache of a split decoded once (MemorySource). The third reads packed shards
(research/data/pack.py PackedSource)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from research.data.decode import decode_row
from research.data.manifest import DataError, Row


class FileSource:
    """A Grain random-access source over manifest rows that decodes a sample's files when it is read."""

    def __init__(self, manifest: Path, rows: list[Row], image_size: int, sample_rate: int, at: float | None = 0.5):
        self.manifest, self.rows, self.image_size, self.sample_rate = manifest, rows, image_size, sample_rate
        self.at = at  # where a video face's frame is read (decode_row); None: the pipeline's frames.Frame reads it

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        try:
            s = decode_row(self.manifest.parent, row, self.image_size, self.sample_rate, self.at)
        except DataError as err:  # the loader's message: the file, then where the row is
            return {"error": f"{err} (manifest {self.manifest} line {row.line}, sample '{row.id}')"}
        size = self.image_size
        return {
            "face": np.zeros((3, size, size), np.uint8) if s.face is None else s.face,  # (3, H, W) uint8
            "voice": np.zeros(0, np.float32) if s.voice is None else s.voice,  # (n,) float32, any length
            "text": s.text,  # None = missing
        }


class MemorySource:
    """The in-memory cache (data.cache): a split's samples decoded and tokenised once, read by index."""

    def __init__(self, face: np.ndarray, voice: list[np.ndarray], text_ids: np.ndarray, text_mask: np.ndarray) -> None:
        self.face, self.voice, self.text_ids, self.text_mask = face, voice, text_ids, text_mask

    def __len__(self) -> int:
        return len(self.voice)

    def __getitem__(self, i: int) -> dict:
        ids, mask = self.text_ids[i], self.text_mask[i]
        return {"face": self.face[i], "voice": self.voice[i], "text_ids": ids, "text_mask": mask}


@dataclass(frozen=True)
class Stream:
    """How a split that is not cached is read: its source and what reading needs beyond the source."""

    source: Sequence[dict]  # sources.FileSource or pack.PackedSource
    tokenizer: str
    text_len: int
    on_error: str  # "raise" or "skip"
