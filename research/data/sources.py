"""The input pipeline's source that decodes a sample's files when it reads it (FileSource; research/data/decode.py
decode_row). The pipeline's other sources: the in-memory cache of a split decoded once
(research/data/pipeline.py MemorySource) and packed shards (research/data/pack.py PackedSource)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from research.data.decode import decode_row
from research.data.manifest import DataError, Row


class FileSource:
    """A Grain random-access source over manifest rows that decodes a sample's files when it is read."""

    def __init__(self, manifest: Path, rows: list[Row], image_size: int, sample_rate: int) -> None:
        self.manifest, self.rows, self.image_size, self.sample_rate = manifest, rows, image_size, sample_rate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        try:
            s = decode_row(self.manifest.parent, row, self.image_size, self.sample_rate)
        except DataError as err:  # the loader's message: the file, then where the row is
            return {"error": f"{err} (manifest {self.manifest} line {row.line}, sample '{row.id}')"}
        size = self.image_size
        return {
            "face": np.zeros((3, size, size), np.uint8) if s.face is None else s.face,  # (3, H, W) uint8
            "voice": np.zeros(0, np.float32) if s.voice is None else s.voice,  # (n,) float32, any length
            "text": s.text,  # None = missing
        }


@dataclass(frozen=True)
class Stream:
    """How a split that is not cached is read: its source and what reading needs beyond the source."""

    source: Sequence[dict]  # sources.FileSource or pack.PackedSource
    tokenizer: str
    text_len: int
    on_error: str  # "raise" or "skip"
