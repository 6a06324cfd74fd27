"""Decode one face / voice / transcript file, and a manifest row's files (decode_row); every failure is a
DataError that names the file.

Voices: WAV, FLAC, OGG (and any libsndfile format) through soundfile; M4A/AAC and the audio track of
MP4 and other containers through PyAV (FFmpeg). Any sample rate and channel count: channels are
averaged to mono, then the signal is resampled to the requested rate with a polyphase filter
(scipy.signal.resample_poly). Faces: JPEG/PNG (any Pillow format), or one frame of a video through
PyAV (at a time in seconds, or at a fraction of its duration: research/data/frames.py), cropped by a box when given,
then resized.
"""

from __future__ import annotations

import unicodedata
from math import gcd
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import soundfile
from PIL import Image, UnidentifiedImageError
from scipy.signal import resample_poly

from research.data.manifest import DataError, Row, numbers

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
AV_AUDIO_SUFFIXES = (".m4a", ".aac", ".mp3", *VIDEO_SUFFIXES)  # decoded with PyAV rather than libsndfile


def read_face(
    path: Path, size: int, box: list[float] | None = None, frame: float | None = None, at: float | None = None
) -> np.ndarray:
    """Image (or one frame of a video: at `frame` seconds, or at `at` times its duration) -> uint8 (3, size, size) RGB.

    `box` = [x, y, w, h] in pixels crops the face first (clipped to the image); then a bilinear resize.
    """
    if frame is not None or at is not None:
        image = _video_frame(path, frame, at)
    else:
        try:
            with Image.open(path) as opened:
                image = _rgb(opened, path)
        except FileNotFoundError:
            raise DataError(f"missing face file {path}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(f"unreadable face file {path}: {err}") from None
    if box is not None:
        x, y, w, h = box
        left, top = max(0, round(x)), max(0, round(y))
        right, bottom = min(image.width, round(x + w)), min(image.height, round(y + h))
        if right <= left or bottom <= top:
            raise DataError(f"face box {box} lies outside the {image.width}x{image.height} image {path}")
        image = image.crop((left, top, right, bottom))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# Modes wider than 8 bits, and the value that is full scale in each: 16-bit greyscale (and "I", which is how
# Pillow opens 16-bit PNGs too) by 65535, float greyscale by 1. Pillow's own convert("RGB") clips them at 255.
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def _rgb(image: Image.Image, path: Path) -> Image.Image:
    """An image of any Pillow mode -> 8-bit RGB, scaled by its bit depth (every 8-bit mode as Pillow converts it)."""
    full = WIDE_MODES.get(image.mode)
    if full is None:
        return image.convert("RGB")
    grey = np.asarray(image, dtype=np.float64) / full  # (H, W)
    if not np.isfinite(grey).all():
        raise DataError(f"face file {path} has non-finite pixels (NaN or inf)")
    grey = np.round(np.clip(grey, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _video_frame(path: Path, seconds: float | None, at: float | None) -> Image.Image:
    """The frame on screen at `seconds`, or at `at` x the video's duration: the last one that starts at or before
    that time (the first frame before the video starts, the last one after it ends). Seeks to the key frame
    before it and decodes from there, not the whole video."""
    if not path.is_file():
        raise DataError(f"missing face file {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"face file {path} has no video stream")
            stream = container.streams.video[0]
            if seconds is None:
                start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
                seconds = start + at * _video_seconds(container, stream, path)
            container.seek(int(seconds / stream.time_base), stream=stream, any_frame=False, backward=True)
            found = None
            for frame in container.decode(stream):
                if found is not None and frame.time is not None and frame.time > seconds + 1e-6:
                    break
                found = frame
            if found is None:
                raise DataError(f"face file {path} has no frame at {seconds} s")
            return found.to_image()
    except av.FFmpegError as err:
        raise DataError(f"unreadable face file {path}: {err}") from None


def _video_seconds(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> float:
    """Seconds of a video stream: its own duration, else the container's (from the headers)."""
    if stream.duration is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    raise DataError(f"face file {path} has no duration")


def read_voice(path: Path, sample_rate: int, segment: list[float] | None = None) -> np.ndarray:
    """Audio file -> float32 (S,) mono at `sample_rate`; `segment` = [start, end] seconds cuts it first."""
    if not path.is_file():
        raise DataError(f"missing voice file {path}")
    if path.suffix.lower() in AV_AUDIO_SUFFIXES:
        audio, rate = _read_av(path)
    else:
        audio, rate = _read_soundfile(path)
    if segment is not None:
        audio = audio[round(segment[0] * rate) : round(segment[1] * rate)]
    if len(audio) == 0:
        raise DataError(f"voice file {path} has no samples" + (f" in segment {segment}" if segment else ""))
    if not np.isfinite(audio).all():  # a float file can hold NaN or inf; a network fed one would learn nothing
        raise DataError(
            f"voice file {path} has non-finite samples (NaN or inf)" + (f" in segment {segment}" if segment else "")
        )
    return resample(audio.mean(axis=1), rate, sample_rate)


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR) from `rate` to `target` Hz; float32 out, clipped to [-1, 1]."""
    if rate == target:
        return audio.astype(np.float32)
    g = gcd(rate, target)
    out = resample_poly(audio.astype(np.float64), target // g, rate // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (S, channels)
    except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(f"unreadable voice file {path}: {err}") from None
    if _truncated_wav(path):
        raise DataError(f"unreadable voice file {path}: truncated (its data chunk is longer than the file)")
    return audio, rate


def _read_av(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of a container (M4A, MP4, ...) as float32 (S, channels) and its rate."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError(f"voice file {path} has no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # planar float, same rate and layout
            chunks = [f.to_ndarray() for frame in container.decode(stream) for f in to_float.resample(frame)]
            chunks += [f.to_ndarray() for f in to_float.resample(None)]  # flush
            rate = stream.rate
    except av.FFmpegError as err:
        raise DataError(f"unreadable voice file {path}: {err}") from None
    if not chunks:
        raise DataError(f"voice file {path} has no samples")
    return np.concatenate(chunks, axis=1).T, rate  # (S, channels)


def probe_voice(path: Path) -> float:
    """Seconds of audio in a file, read from its header (fast; `read_voice` decodes); DataError if unreadable."""
    if not path.is_file():
        raise DataError(f"missing voice file {path}")
    if path.suffix.lower() not in AV_AUDIO_SUFFIXES:
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError, ValueError) as err:
            raise DataError(f"unreadable voice file {path}: {err}") from None
        if info.frames == 0:
            raise DataError(f"voice file {path} has no samples")
        return info.frames / info.samplerate
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise DataError(f"voice file {path} has no audio stream")
            if container.duration is None or container.duration <= 0:
                raise DataError(f"voice file {path} has no duration")
            return container.duration / av.time_base
    except av.FFmpegError as err:
        raise DataError(f"unreadable voice file {path}: {err}") from None


def probe_video(path: Path) -> float:
    """Seconds of a video that has both a video and an audio stream; DataError if unreadable."""
    seconds = probe_voice(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(f"video file {path} has no video stream")
    return seconds


def probe_face(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header; DataError if missing or not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
            return image.size
    except FileNotFoundError:
        raise DataError(f"missing face file {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"unreadable face file {path}: {err}") from None


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
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"missing text file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"unreadable text file {path}: {err}") from None
    return transcript(text, str(path))


def transcript(text: str, where: str) -> str:
    """`text` stripped of surrounding whitespace; DataError when nothing but whitespace and control or format
    characters (NUL bytes, a lone byte-order mark) is left: the tokenizer would turn that into an empty text."""
    text = text.strip()
    if not any(not c.isspace() and unicodedata.category(c)[0] != "C" for c in text):
        raise DataError(f"empty transcript {where}")
    return text


class Decoded(NamedTuple):
    """One row with its decoded files (None = modality missing)."""

    row: Row
    face: np.ndarray | None  # (3, H, W) uint8
    voice: np.ndarray | None  # (S,) float32
    text: str | None


def is_video(row: Row) -> bool:
    """True when the row's face is a video without a `frame`: its frame is chosen when it is read (frames.py)."""
    return bool(row.face) and not row.frame and Path(row.face).suffix.lower() in VIDEO_SUFFIXES


def decode_row(folder: Path, row: Row, image_size: int, sample_rate: int, at: float | None = 0.5) -> Decoded:
    """Decode one row's files (paths relative to `folder`): face cropped by its box, voice cut to its segment.
    A video face without a `frame` is read at `at` x its duration (0.5: the middle frame); at=None leaves it to
    the input pipeline (face None: research/data/frames.py reads the frame the epoch chose)."""
    box = numbers(row.box) or None
    frame = numbers(row.frame)[0] if row.frame else None
    video = is_video(row)
    face = None
    if row.face and not (video and at is None):
        face = read_face(folder / row.face, image_size, box, frame, at if video else None)
    voice = read_voice(folder / row.voice, sample_rate, numbers(row.segment) or None) if row.voice else None
    text = read_text(folder / row.text) if row.text else None
    if row.transcript:
        text = transcript(row.transcript, f"in the transcript column of sample '{row.id}'")
    return Decoded(row, face, voice, text)
