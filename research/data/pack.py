"""Packed datasets: decoded, resized samples in ArrayRecord shards (Grain's random-access format).

    python experiments/prepare.py pack data/vox2.csv --out data/vox2-packed     # writes data/vox2-packed/vox2.csv

A dataset of millions of loose files is slow to read at random; `write` decodes every row once (faces
cropped and resized to `image_size`, voices resampled to `sample_rate`, transcripts read) and writes
one record per sample into `shard-K.array_record`. Next to the shards it writes a manifest of the
same rows (labels, splits, sidecar) whose face / voice / text point at the sample's record
(`shard-00000.array_record#17`), and `NAME.packed.json` (the sizes it was decoded at, the
shards); training on that manifest reads the records through the same input pipeline as loose files.
A record is a JSON header line, then the face's uint8 bytes, then the voice's float32 bytes: no pickle.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from research.data import checked, manifest
from research.data.manifest import DataError, Row
from research.data.pipeline import OPTIONS, Read
from research.data.sources import FileSource


def info_path(path: str | Path) -> Path:
    """`DIR/vox2.csv` -> `DIR/vox2.packed.json`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.packed.json")


def is_packed(path: str | Path) -> bool:
    return info_path(path).is_file()


def encode(record: dict) -> bytes:
    """A sample record (face (3, H, W) uint8, voice (n,) float32, text) -> bytes."""
    face, voice = record["face"], record["voice"].astype("<f4")
    header = {"face": list(face.shape), "voice": len(voice), "text": record["text"]}
    return json.dumps(header).encode() + b"\n" + face.tobytes() + voice.tobytes()


def decode(data: bytes) -> dict:
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    faces = int(np.prod(header["face"]))
    face = np.frombuffer(body, np.uint8, faces).reshape(header["face"])
    voice = np.frombuffer(body, "<f4", header["voice"], offset=faces).astype(np.float32)
    return {"face": face, "voice": voice, "text": header["text"]}


class PackedSource:
    """A Grain random-access source over the records a packed manifest's rows point at."""

    def __init__(self, path: Path, rows: list[Row], image_size: int, sample_rate: int) -> None:
        info = json.loads(info_path(path).read_text())
        if (info["image_size"], info["sample_rate"]) != (image_size, sample_rate):
            raise DataError(
                f"{path} was packed at image_size {info['image_size']}, sample_rate {info['sample_rate']}: set "
                f"data.image_size / data.sample_rate to those, or pack again at {image_size}, {sample_rate}"
            )
        first = {name: sum(info["counts"][:k]) for k, name in enumerate(info["shards"])}
        self.index = [_record_index(path, r, first) for r in rows]  # row -> record number over all shards
        self.paths = [str(path.parent / name) for name in info["shards"]]
        self.records = None  # opened in the process that reads

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        if self.records is None:
            self.records = grain.sources.ArrayRecordDataSource(self.paths)
        return decode(self.records[self.index[i]])

    def __getstate__(self) -> dict:  # an open reader does not travel to worker processes
        return self.__dict__ | {"records": None}


def _record_index(path: Path, row: Row, first: dict[str, int]) -> int:
    pointer = row.face or row.voice or row.text
    shard, _, k = pointer.partition("#")
    if shard not in first or not k.isdigit():
        raise DataError(f"manifest {path} line {row.line}: '{pointer}' is not a record of its packed shards")
    return first[shard] + int(k)


def write(
    path: Path,
    out: Path,
    *,
    image_size: int,
    sample_rate: int,
    on_error: str = "raise",
    workers: int = 0,
    per_shard: int = 10000,
) -> tuple[Path, list[str]]:
    """Pack manifest `path` into folder `out` -> (the packed manifest, problems of skipped rows)."""
    rows, meta = manifest.read(path), manifest.read_meta(path)
    out.mkdir(parents=True, exist_ok=True)
    ds = grain.MapDataset.source(np.arange(len(rows))).map(Read(FileSource(path, rows, image_size, sample_rate)))
    ds = grain.experimental.WithOptionsIterDataset(ds.to_iter_dataset(), OPTIONS)  # before the workers: they read it
    if workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    shards = -(-len(rows) // per_shard)
    names = [f"shard-{k:05d}.array_record" for k in range(shards)]
    packed, problems, counts, writer = [], [], [0] * shards, None
    it = iter(ds)
    try:
        for record in it:
            row = rows[record["index"]]
            if "error" in record:
                if on_error == "raise":
                    raise DataError(record["error"])
                problems.append(record["error"])
                continue
            k = len(packed) // per_shard
            if counts[k] == 0:
                writer = _next_writer(writer, out / names[k])
            writer.write(encode(record))
            packed.append(_pointing(row, f"{names[k]}#{counts[k]}"))
            counts[k] += 1
    finally:
        it.close()
        if writer is not None:
            writer.close()
    used = [k for k in range(shards) if counts[k]]
    info = {"image_size": image_size, "sample_rate": sample_rate, "shards": [names[k] for k in used]}
    info_path(out / path.name).write_text(json.dumps(info | {"counts": [counts[k] for k in used]}, indent=1))
    target = manifest.write(out / path.name, packed, meta)  # written last: a packed manifest is a complete one
    checked.save(target, image_size, sample_rate, [])  # every packed sample decoded; the bad ones are not in it
    return target, problems


def _next_writer(writer: ArrayRecordWriter | None, file: Path) -> ArrayRecordWriter:
    if writer is not None:
        writer.close()
    return ArrayRecordWriter(str(file), "group_size:1")  # one record per chunk: fast random reads


def _pointing(row: Row, pointer: str) -> Row:
    """The row with its present modalities pointing at its record (boxes, segments already applied)."""
    text = bool(row.text or row.transcript)
    return dataclasses.replace(
        row,
        face=pointer if row.face else "",
        voice=pointer if row.voice else "",
        text=pointer if text else "",
        box="",
        frame="",
        segment="",
        transcript="",
    )
