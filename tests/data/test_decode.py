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
