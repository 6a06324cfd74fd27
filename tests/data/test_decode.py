"""Decoding: any rate and channel count resampled and mixed to mono, every container format, face boxes and
video frames; against analytic signals and the images written."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from research.data import decode
from research.data.manifest import DataError
from tests.data import layouts


def sine(freq, rate, seconds=0.5):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_the_requested_one(tmp_path, rate):
    path = tmp_path / "a.wav"
    soundfile.write(path, sine(440, rate), rate, subtype="FLOAT")
    out = decode.read_voice(path, 16000)
    assert len(out) == 8000  # 0.5 s at 16 kHz
    inner = slice(400, -400)  # the filter's edges aside, the resampled signal is the sine at 16 kHz
    np.testing.assert_allclose(out[inner], sine(440, 16000)[inner], atol=0.01)


def test_channels_are_averaged_to_mono(tmp_path):
    left, right = sine(440, 16000), sine(1000, 16000)
    soundfile.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(decode.read_voice(tmp_path / "s.wav", 16000), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("suffix", ["flac", "ogg", "m4a", "mp4"])
def test_every_format_reads_with_its_tone(tmp_path, suffix):
    wave = layouts.wave("spk", 16000, 0.5)  # (S, 1)
    path = tmp_path / f"a.{suffix}"
    if suffix == "m4a":
        layouts.write_m4a(path, wave, 16000)
    elif suffix == "mp4":
        layouts.write_mp4(path, [50, 100], 4, wave, 16000)
    else:
        soundfile.write(path, wave, 16000)
    out = decode.read_voice(path, 16000)
    spectrum = np.abs(np.fft.rfft(out[:8000] * np.hanning(8000)))
    assert np.fft.rfftfreq(8000, 1 / 16000)[spectrum.argmax()] == pytest.approx(layouts.tone("spk"), abs=2)
    assert 8000 <= len(out) <= 8000 + 2048 + 1024  # AAC pads up to two frames and a priming delay


def test_a_segment_cuts_the_voice(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.linspace(-0.5, 0.5, 8000), 8000, subtype="FLOAT")
    out = decode.read_voice(tmp_path / "a.wav", 8000, [0.25, 0.5])
    np.testing.assert_allclose(out, np.linspace(-0.5, 0.5, 8000)[2000:4000], atol=1e-6)
    with pytest.raises(DataError, match="no samples in segment"):
        decode.read_voice(tmp_path / "a.wav", 8000, [2.0, 3.0])


def test_a_box_crops_the_face_before_resizing(tmp_path):
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10:30, 20:40] = (200, 10, 10)  # the face: 20 x 20 at (20, 10)
    Image.fromarray(pixels).save(tmp_path / "f.png")
    face = decode.read_face(tmp_path / "f.png", 8, [20, 10, 20, 20])
    assert face.shape == (3, 8, 8) and (face[0] == 200).all() and (face[1:] == 10).all()
    assert decode.read_face(tmp_path / "f.png", 8)[0].mean() < 100  # without the box: mostly background
    with pytest.raises(DataError, match="outside the 60x40 image"):
        decode.read_face(tmp_path / "f.png", 8, [70, 50, 5, 5])


def test_a_video_frame_is_the_one_on_screen(tmp_path):
    path = tmp_path / "v.mp4"
    layouts.write_mp4(path, [0, 60, 120, 180, 240], 5, layouts.wave("x", 16000, 1.0), 16000)
    for seconds, level in [(0.0, 0), (0.19, 0), (0.2, 60), (0.5, 120), (0.85, 240), (9.0, 240)]:
        assert abs(decode.read_face(path, 8, frame=seconds).mean() - level) < 3, seconds


def test_unreadable_containers_are_errors_naming_the_file(tmp_path):
    for name in ("a.m4a", "v.mp4"):
        (tmp_path / name).write_bytes(b"not a container" * 30)
        with pytest.raises(DataError, match=f"unreadable voice file {tmp_path / name}"):
            decode.read_voice(tmp_path / name, 16000)
        with pytest.raises(DataError, match=f"unreadable voice file {tmp_path / name}"):
            decode.probe_voice(tmp_path / name)
    with pytest.raises(DataError, match="unreadable face file"):
        decode.read_face(tmp_path / "v.mp4", 8, frame=0.0)
    layouts.write_m4a(tmp_path / "only_audio.m4a", layouts.wave("x"), 16000)
    with pytest.raises(DataError, match="has no video stream"):
        decode.read_face(Path(tmp_path / "only_audio.m4a"), 8, frame=0.0)


def test_a_16_bit_greyscale_png_is_scaled_by_its_depth_not_clipped(tmp_path):
    """The issue's reproduction: 0..65472 used to decode with 99.6% of the pixels clipped to 255 (mean 254.4)."""
    values = (np.arange(1024).reshape(32, 32) * 64).astype("u2")
    Image.fromarray(values).save(tmp_path / "g.png")
    face = decode.read_face(tmp_path / "g.png", 32)
    expected = np.round(values / 65535 * 255)
    assert face.shape == (3, 32, 32) and (face == expected).all()
    assert abs(face.mean() - 127.2) < 0.5


# A grey of 0.4 (102 / 255) in every mode Pillow writes to TIFF: the 8-bit modes as Pillow converts them,
# 16-bit by 65535, 32-bit integer "I" by 65535 (as Pillow used to open 16-bit PNGs), float "F" by 1.
MODES = {"1": None, "L": 102, "P": 102, "RGB": 102, "RGBA": 102, "CMYK": 102, "YCbCr": 102, "LAB": 102, "LA": 102}
MODES |= {"PA": 102, "I;16": 26214, "I;16B": 26214, "I": 26214, "F": 0.4}


@pytest.mark.parametrize("mode, value", MODES.items())
def test_every_pillow_mode_decodes_to_rgb_by_its_bit_depth(tmp_path, mode, value):
    grey = Image.new("RGB", (8, 8), (102, 102, 102))
    if value is None or isinstance(value, int) and value < 256:
        image = grey.convert(mode)
    else:
        image = Image.fromarray(np.full((8, 8), value, np.float32 if mode == "F" else np.int32)).convert(mode)
    image.save(tmp_path / "f.tiff")
    with Image.open(tmp_path / "f.tiff") as opened:
        assert opened.mode in (mode, "I;16")  # Pillow reads I;16B back as I;16B or I;16
    face = decode.read_face(tmp_path / "f.tiff", 8)
    expected = 255 if mode == "1" else 102  # a 1-bit image dithers grey into black and white
    assert face.shape == (3, 8, 8) and face.dtype == np.uint8
    if mode == "1":
        assert set(np.unique(face)) <= {0, 255}
    else:
        assert np.abs(face.astype(int) - expected).max() <= 2, mode


def test_a_non_finite_sample_in_a_float_wav_is_an_error_naming_the_file(tmp_path):
    audio = sine(200, 16000).astype(np.float32)
    for bad in (np.nan, np.inf):
        audio[100] = bad
        soundfile.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
        with pytest.raises(DataError, match=f"voice file {tmp_path / 'a.wav'} has non-finite samples"):
            decode.read_voice(tmp_path / "a.wav", 16000)
    assert decode.read_voice(tmp_path / "a.wav", 16000, [0.1, 0.4]).shape == (4800,)  # a segment without it


@pytest.mark.parametrize("text", ["\x00\x00\x00", " \x00\n\x07\t", "\ufeff", "\u200b \x1b"])
def test_a_transcript_of_control_characters_is_empty(text):
    with pytest.raises(DataError, match="empty transcript t.txt"):
        decode.transcript(text, "t.txt")
    assert decode.transcript(f" {text}hello\n", "t.txt").endswith("hello")
