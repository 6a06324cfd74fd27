"""Speech-like voices for the synthetic persons dataset: a source-filter model in NumPy.

Each syllable is a glottal pulse train at the speaker's pitch f0 (with jitter and an intonation
contour), plus breath noise, shaped by a spectral tilt and resonances (three vowel formants and one
fixed speaker resonance), |H(f)| = prod_k 1 / sqrt((1 - (f/F_k)^2)^2 + (f B_k / F_k^2)^2): a cascade of
two-pole resonators (Fant 1960, "Acoustic Theory of Speech Production"), applied in the frequency
domain. Identity lives in f0, the vocal-tract scale and the speaker's own shifts of the formants, the
speaker resonance, the tilt, breathiness and the speaking rate; the content (vowel sequence, syllable
timing, consonant bursts) is random per sample. The group code is a beeping narrowband tone whose
frequency encodes the code: 100 ms on, 100 ms off throughout the clip, loud in its band. It beeps
rather than being steady because voice encoders subtract each mel band's mean over time (cepstral mean
normalisation), which would erase a steady tone; a beep survives it and is plain to a random network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

# Formants F1..F3 (Hz) of an adult male /a/, /e/, /i/, /o/, /u/ (Peterson & Barney 1952, rounded).
_VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]])
_BANDWIDTHS = np.array([70.0, 100.0, 160.0])


@dataclass(frozen=True)
class VoiceTraits:
    f0: float  # mean pitch, Hz
    tract: float  # formant scale (shorter vocal tract -> higher formants)
    shifts: tuple[float, float, float]  # the speaker's own factors on F1, F2, F3 (accent, articulation)
    resonance: float  # a fixed extra resonance, Hz (voice quality, e.g. nasality), independent of the vowel
    tilt: float  # source spectral slope, dB per octave
    breath: float  # aspiration noise relative to the pulses
    jitter: float  # relative pitch perturbation
    rate: float  # syllables per second
    tone: float  # group-code tone, as a fraction of the Nyquist frequency


def code_tone(code: int, codes: int) -> float:
    """Tone of `code` as a fraction of Nyquist: log-spaced from 0.35 to 0.85, above most speech energy."""
    return 0.35 * (0.85 / 0.35) ** (code / max(codes - 1, 1))


def sample_traits(rng: np.random.Generator, female: bool, age: int, tone: float) -> VoiceTraits:
    """Draw one identity's voice; `age` is the age-bin index 0..6 (children are higher, the old shakier)."""
    f0 = rng.uniform(165, 255) if female else rng.uniform(85, 150)
    tract = rng.uniform(1.10, 1.22) if female else rng.uniform(0.92, 1.04)
    if age == 0:
        f0, tract = f0 * 1.3, tract * 1.12
    return VoiceTraits(
        f0=f0,
        tract=tract,
        shifts=tuple(rng.uniform(0.9, 1.1, 3)),
        resonance=rng.uniform(1200.0, 2600.0),
        tilt=rng.uniform(-15.0, -7.0),
        breath=rng.uniform(0.02, 0.25),
        jitter=rng.uniform(0.005, 0.02) * (2.5 if age >= 5 else 1.0),
        rate=rng.uniform(3.0, 6.5),
        tone=tone,
    )


def render(t: VoiceTraits, seconds: float, sample_rate: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """One utterance as float32 in [-1, 1]; its length varies in 0.7..1.3 x `seconds`."""
    n = int(seconds * rng.uniform(0.7, 1.3) * sample_rate)
    out = np.zeros(n)
    # Per-sample drift of the speaker's traits, scaled by the noise knob.
    f0 = t.f0 * (1 + noise * rng.uniform(-0.08, 0.08))
    tract = t.tract * (1 + noise * rng.uniform(-0.04, 0.04))
    period = 1.0 / (t.rate * (1 + noise * rng.uniform(-0.15, 0.15)))
    start = int(rng.uniform(0.0, 0.1) * sample_rate)
    while start < n:
        if rng.random() < 0.5:  # a consonant burst before the vowel
            burst = _burst(rng, sample_rate)
            _add(out, burst, start)
            start += len(burst)
        length = int(period * rng.uniform(0.5, 0.9) * sample_rate)
        contour = 1 + 0.08 * (1 - 2 * start / n)  # declination over the utterance
        syllable = _syllable(t, f0 * contour, tract, length, sample_rate, rng)
        _add(out, syllable * rng.uniform(0.5, 1.0), start)
        start += length + int(period * rng.uniform(0.1, 0.5) * sample_rate)
    out *= 0.5 / max(np.abs(out).max(), 1e-9)
    out += _beeps(t.tone * sample_rate / 2, n, sample_rate, rng)
    gain = 10 ** (-noise * rng.uniform(0.0, 6.0) / 20)  # channel gain, up to -6 dB
    out = gain * out + (0.001 + noise * 0.02) * rng.standard_normal(n)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _beeps(freq: float, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A tone at `freq` Hz gated 100 ms on / 100 ms off (10 ms ramps), starting at a random phase."""
    time = np.arange(n) / sample_rate + rng.uniform(0, 0.2)
    cycle = np.mod(time, 0.2)  # seconds into the current 200 ms period
    gate = np.clip(np.minimum(cycle, 0.1 - cycle) / 0.01, 0.0, 1.0)  # ramps up, holds, ramps down, 0 after
    return 0.15 * gate * np.sin(2 * np.pi * freq * time)


def _syllable(
    t: VoiceTraits, f0: float, tract: float, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One voiced syllable: pulse train at f0 (accent + jitter) through tilt and formants."""
    progress = np.linspace(0, 1, length)
    accent = rng.uniform(-0.06, 0.10)
    wobble = np.interp(progress, np.linspace(0, 1, 16), rng.standard_normal(16))
    pitch = f0 * (1 + accent * np.sin(np.pi * progress)) * (1 + t.jitter * wobble)  # (S,)
    cycles = np.cumsum(pitch / sample_rate)
    pulses = np.diff(np.floor(cycles), prepend=0.0)  # 1 at the start of each glottal cycle
    source = pulses + t.breath * rng.standard_normal(length) * 0.3
    vowel = _VOWELS[rng.integers(len(_VOWELS))] * np.array(t.shifts) * tract * (1 + rng.uniform(-0.05, 0.05, 3))
    formants = np.append(vowel, t.resonance * tract)
    widths = np.append(_BANDWIDTHS * tract, 0.25 * t.resonance)
    response = partial(_vocal_tract, tilt=t.tilt, formants=formants, widths=widths)
    shaped = _shape(source * _envelope(length, sample_rate), sample_rate, response)
    return shaped / max(np.sqrt(np.mean(shaped**2)), 1e-9)


def _burst(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A short band of noise (a fricative or plosive), 20-60 ms, centred between 1.5 kHz and 0.7 Nyquist."""
    length = int(rng.uniform(0.02, 0.06) * sample_rate)
    centre = rng.uniform(1500, 0.35 * sample_rate)
    band = partial(_band, centre=centre)
    shaped = _shape(rng.standard_normal(length) * _envelope(length, sample_rate), sample_rate, band)
    return 0.3 * shaped / max(np.abs(shaped).max(), 1e-9)


def _band(f: np.ndarray, centre: float) -> np.ndarray:
    """Gaussian band-pass response with a width of a quarter of its centre frequency."""
    return np.exp(-0.5 * ((f - centre) / (0.25 * centre)) ** 2)


def _vocal_tract(f: np.ndarray, tilt: float, formants: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Magnitude response: source tilt (dB/octave above 100 Hz) times a cascade of formant resonators."""
    gain = (np.maximum(f, 100.0) / 100.0) ** (tilt / (20 * np.log10(2)))
    for centre, width in zip(formants, widths, strict=True):
        gain = gain / np.sqrt((1 - (f / centre) ** 2) ** 2 + (f * width / centre**2) ** 2)
    return gain * (f >= 60.0)  # no DC or rumble


def _shape(x: np.ndarray, sample_rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter x by the zero-phase response gain(f) in the frequency domain; keeps 512 samples of ring-down."""
    size = 1 << int(np.ceil(np.log2(len(x) + 1024)))
    f = np.fft.rfftfreq(size, 1 / sample_rate)  # (F,)
    return np.fft.irfft(np.fft.rfft(x, size) * gain(f), size)[: len(x) + 512]


def _envelope(length: int, sample_rate: int) -> np.ndarray:
    """Raised-cosine attack and release of 15 ms (shorter for short segments)."""
    ramp = min(int(0.015 * sample_rate), length // 2)
    env = np.ones(length)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        env[:ramp], env[length - ramp :] = rise, rise[::-1]
    return env


def _add(out: np.ndarray, segment: np.ndarray, start: int) -> None:
    """out[start:] += segment, cut at the end of `out`."""
    stop = min(len(out), start + len(segment))
    if stop > start:
        out[start:stop] += segment[: stop - start]
