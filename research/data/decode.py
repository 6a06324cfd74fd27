"""Decode one face / voice / transcript file; every failure is a DataError that names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
from PIL import Image, UnidentifiedImageError

from research.data.manifest import DataError


def read_face(path: Path, size: int) -> np.ndarray:
    """PNG (or any Pillow format) -> uint8 (3, size, size) RGB, resized with bilinear filtering."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    except FileNotFoundError:
        raise DataError(f"missing face file {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"unreadable face file {path}: {err}") from None
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def read_voice(path: Path, sample_rate: int) -> np.ndarray:
    """WAV (or any libsndfile format) -> float32 (S,) mono in [-1, 1]; the rate must match."""
    if not path.is_file():
        raise DataError(f"missing voice file {path}")
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (S, channels)
    except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(f"unreadable voice file {path}: {err}") from None
    if _truncated_wav(path):
        raise DataError(f"unreadable voice file {path}: truncated (its data chunk is longer than the file)")
    if rate != sample_rate:
        raise DataError(f"voice file {path} has sample rate {rate} Hz, expected {sample_rate} Hz")
    if len(audio) == 0:
        raise DataError(f"voice file {path} has no samples")
    return audio.mean(axis=1)


def _truncated_wav(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk claims more bytes than the file holds (a cut-off copy).

    libsndfile reads such a file without complaint, returning only the samples that are there.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return False
        while len(chunk := f.read(8)) == 8:
            name, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return length != 0xFFFFFFFF and f.tell() + length > size  # 0xFFFFFFFF: streamed, unknown size
            f.seek(length + length % 2, 1)  # chunks are padded to an even size
    return False


def read_text(path: Path) -> str:
    """UTF-8 transcript with surrounding whitespace removed; an empty one is an error."""
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        raise DataError(f"missing text file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"unreadable text file {path}: {err}") from None
    if not text:
        raise DataError(f"empty transcript {path}")
    return text
