"""Front ends of the voice encoders (log-mel, Kaldi fbank), with SpecAugment in training.

Frames are not centred (`center=False`): frame t covers samples [t*hop, t*hop + win), so a frame is
valid exactly when its whole window lies inside the first `voice_len` samples. Valid frames never see
padding, which makes everything downstream independent of how much zero padding follows the voice.

The jnp twin of torchaudio's MelSpectrogram as the torch twin builds it: periodic Hann window, no
padding, |rfft|^2 (n_fft = window length), HTK mel filterbank without normalisation from 0 Hz to
Nyquist. Its window and filterbank are Buffers, converted from torch's `mel.spectrogram.window` and
`mel.mel_scale.fb` (encoders/jax/convert.py RENAMES).

The Kaldi fbank's window and mel banks are Buffers named as the torch twin's buffers (`window`, `mel_banks`),
built here in NumPy float32 as torchaudio.compliance.kaldi builds them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.jax.layers import Buffer

N_MELS = 40
EPS = 1e-6  # log(power + EPS): keeps silence finite
FBANK_BINS = 80  # WeSpeaker's fbank80
PREEMPHASIS = 0.97  # Kaldi's default
WAVE_SCALE = 1 << 15  # WeSpeaker scales [-1, 1] waveforms to the 16-bit range before Kaldi's fbank


def hann_window(n: int) -> np.ndarray:
    """(n,) periodic Hann window, as torch.hann_window (np.hanning is the symmetric one)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def linspace(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32, rounded as its CPU kernel: from the nearer end, one rounding per value."""
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    i = np.arange(steps)
    from_start = np.float64(start32) + np.float64(step) * i
    from_end = np.float64(end32) - np.float64(step) * (steps - 1 - i)
    return np.where(i < steps // 2, from_start, from_end).astype(np.float32)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_freqs, n_mels) triangular filters with centres equally spaced on the HTK mel scale from 0 Hz to
    Nyquist, unnormalised: torchaudio's melscale_fbanks defaults, in its float32 arithmetic step by step.

    Rounding as torchaudio does matters: a filter's weights near its edges are tiny, so one float32 ulp
    in an edge frequency changes the log-power of a band that a strong tone reaches only there by ~1e-4.
    At 16 kHz the filters equal torchaudio's bit for bit; at some rates torch's pow is 1 ulp off.
    """
    f32 = np.float32
    freqs = linspace(0, sample_rate // 2, n_freqs)  # (F,) the rfft bins in Hz
    top = 2595.0 * math.log10(1.0 + (sample_rate // 2) / 700.0)
    mels = linspace(0.0, top, n_mels + 2)  # (M + 2,)
    powers = (10.0 ** (mels / f32(2595.0)).astype(np.float64)).astype(f32)  # correctly rounded, as torch's pow
    edges = f32(700.0) * (powers - f32(1.0))  # (M + 2,) in Hz
    widths = edges[1:] - edges[:-1]  # (M + 1,)
    slopes = edges[None, :] - freqs[:, None]  # (F, M + 2)
    down = -slopes[:, :-2] / widths[:-1]  # (F, M)
    up = slopes[:, 2:] / widths[1:]  # (F, M)
    return np.maximum(f32(0.0), np.minimum(down, up))


def _hamming_window(n: int) -> np.ndarray:
    """(n,) symmetric Hamming window 0.54 - 0.46 cos(2 pi i / (n - 1)), as torch.hamming_window(periodic=False)."""
    return (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n) / (n - 1))).astype(np.float32)


def _kaldi_mel(freq: np.ndarray) -> np.ndarray:
    """Kaldi's mel scale 1127 ln(1 + f / 700), in float32."""
    f32 = np.float32
    return f32(1127.0) * np.log(f32(1.0) + freq / f32(700.0))


def _kaldi_mel_banks(bins: int, fft: int, sample_rate: int) -> np.ndarray:
    """(fft/2 + 1, bins) triangular filters equally spaced on Kaldi's mel scale from 20 Hz to Nyquist, the
    Nyquist row 0: torchaudio.compliance.kaldi.get_mel_banks (no VTLN), in its float32 arithmetic."""
    f32 = np.float32
    low, high = 1127.0 * math.log(1.0 + 20.0 / 700.0), 1127.0 * math.log(1.0 + 0.5 * sample_rate / 700.0)
    delta = f32((high - low) / (bins + 1))
    index = np.arange(bins, dtype=f32)[:, None]  # (M, 1)
    left, centre, right = (f32(low) + (index + f32(k)) * delta for k in (0.0, 1.0, 2.0))  # (M, 1) each
    mel = _kaldi_mel(f32(sample_rate / fft) * np.arange(fft // 2, dtype=f32))[None]  # (1, fft/2)
    up, down = (mel - left) / (centre - left), (right - mel) / (right - centre)  # (M, fft/2)
    banks = np.maximum(f32(0.0), np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).T  # (fft/2 + 1, M)


def mean_normalised(x: jax.Array, mask: jax.Array) -> jax.Array:
    """x (B, M, T) minus its mean over the valid frames of mask (B, T) per band; padded frames 0."""
    keep = mask[:, None, :]  # (B, 1, T)
    mean = jnp.where(keep, x, 0.0).sum(-1, keepdims=True) / jnp.maximum(keep.sum(-1, keepdims=True), 1)
    return jnp.where(keep, x - mean, 0.0)


def mask_along_axis(x: jax.Array, key: jax.Array, width: int, axis: int) -> jax.Array:
    """torchaudio's mask_along_axis_iid on x (B, M, T): per sample, w ~ U[0, width) and s ~ U[0, size - w),
    set [floor(s), floor(s) + floor(w)) along `axis` to 0."""
    size = x.shape[axis]
    u = jax.random.uniform(key, (2, x.shape[0]))  # (2, B)
    value = u[0] * width
    start = jnp.floor(u[1] * (size - value))  # (B,)
    end = start + jnp.floor(value)
    index = jnp.arange(size)
    masked = (index >= start[:, None]) & (index < end[:, None])  # (B, size)
    masked = masked[:, :, None] if axis == 1 else masked[:, None, :]
    return jnp.where(masked, 0.0, x)


class LogMel(nnx.Module):
    """Waveform (B, S) -> mean-normalised log-mel features (B, M, T) and their frame mask (B, T).

    25 ms Hann windows every 10 ms, 40 mel bands, log(power + 1e-6), minus the per-utterance mean of
    each band over the valid frames (cepstral mean normalisation); padded frames are set to 0.
    In training with spec_augment=True, SpecAugment (Park et al. 2019) sets one random band of up to
    8 mels and one random span of up to 10 frames to 0 (the mean), independently per sample. The masks
    are drawn from the module's `augment` RNG stream (`nnx.reseed(model, augment=key)`; build with
    `nnx.Rngs(..., augment=...)`, else the module forks the `default` stream, which that leaves alone).
    """

    def __init__(self, sample_rate: int, spec_augment: bool, *, rngs: nnx.Rngs):
        self.bins = N_MELS
        self.win = round(0.025 * sample_rate)
        self.hop = round(0.010 * sample_rate)
        self.spec_augment = spec_augment
        self.hann_window = Buffer(jnp.asarray(hann_window(self.win)))  # (win,)
        self.mel_filterbank = Buffer(jnp.asarray(mel_filterbank(self.win // 2 + 1, N_MELS, sample_rate)))  # (F, M)
        self.freq_mask, self.time_mask = 8, 10
        self.rngs = rngs.augment.fork()
        self.deterministic = False  # training mode, as a new torch module; model.eval() sets it

    def frames(self, lengths: jax.Array) -> jax.Array:
        """Valid frames (B,) of waveforms with `lengths` valid samples: windows that fit inside them."""
        return jnp.maximum((lengths - self.win) // self.hop + 1, 0)

    def __call__(self, wave: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """wave (B, S) float, lengths (B,) int -> features (B, M, T) float32, mask (B, T) bool."""
        # The STFT and the log need float32: bf16 would quantise the log-power to ~3 significant digits
        # (hence also the HIGHEST precision matmul: TPUs multiply float32 in bf16 passes by default).
        wave = wave.astype(jnp.float32)
        T = (wave.shape[-1] - self.win) // self.hop + 1
        index = self.hop * jnp.arange(T)[:, None] + jnp.arange(self.win)  # (T, win)
        spectrum = jnp.fft.rfft(wave[:, index] * self.hann_window[...], axis=-1)  # (B, T, F)
        power = jnp.matmul(jnp.square(jnp.abs(spectrum)), self.mel_filterbank[...], precision="highest")  # (B, T, M)
        x = jnp.log(power + EPS).transpose(0, 2, 1)  # (B, M, T)
        mask = jnp.arange(T) < self.frames(lengths)[:, None]  # (B, T)
        x = mean_normalised(x, mask)  # (B, M, T)
        if not self.deterministic and self.spec_augment:
            x = mask_along_axis(x, self.rngs(), self.freq_mask, axis=1)
            x = mask_along_axis(x, self.rngs(), self.time_mask, axis=2)
        return x, mask


class Fbank(nnx.Module):
    """Waveform (B, S) -> Kaldi log mel filterbank features (B, 80, T), mean-normalised, and the frame mask (B, T).

    WeSpeaker's front end (wespeaker/dataset/processor.py compute_fbank + apply_cmvn): the waveform times 2^15,
    then torchaudio.compliance.kaldi.fbank with 80 bins, 25 ms frames every 10 ms, snip_edges (frame t covers
    samples [t*hop, t*hop + win)), each frame minus its mean (DC offset), pre-emphasis 0.97, a Hamming window
    (WeSpeaker's window_type for its own models; Kaldi's default is 'povey'), zero padding to 512 samples,
    |rfft|^2, Kaldi's mel banks (20 Hz to Nyquist), log(max(energy, float32 eps)); then the mean over the valid
    frames is subtracted per bin (WeSpeaker's CMN, without variance normalisation); padded frames are 0.
    No dither: WeSpeaker trains with dither 1.0 and extracts with 0.0; here the features are deterministic.
    The energy floor only affects Kaldi's log-energy column, which fbank80 (use_energy False) does not output.
    SpecAugment in training as LogMel's (the same `augment` RNG stream).
    """

    def __init__(self, sample_rate: int, spec_augment: bool, *, rngs: nnx.Rngs):
        self.bins = FBANK_BINS
        self.win = int(sample_rate * 0.025)  # Kaldi truncates
        self.hop = int(sample_rate * 0.010)
        self.fft = 1 << (self.win - 1).bit_length()  # the next power of two
        self.spec_augment = spec_augment
        self.window = Buffer(jnp.asarray(_hamming_window(self.win)))  # (win,)
        self.mel_banks = Buffer(jnp.asarray(_kaldi_mel_banks(FBANK_BINS, self.fft, sample_rate)))  # (fft/2 + 1, M)
        self.freq_mask, self.time_mask = 8, 10
        self.rngs = rngs.augment.fork()
        self.deterministic = False  # training mode, as a new torch module; model.eval() sets it

    def frames(self, lengths: jax.Array) -> jax.Array:
        """Valid frames (B,) of waveforms with `lengths` valid samples: windows that fit inside them."""
        return jnp.maximum((lengths - self.win) // self.hop + 1, 0)

    def __call__(self, wave: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """wave (B, S) float, lengths (B,) int -> features (B, M, T) float32, mask (B, T) bool."""
        wave = wave.astype(jnp.float32) * WAVE_SCALE
        T = (wave.shape[-1] - self.win) // self.hop + 1
        frames = wave[:, self.hop * jnp.arange(T)[:, None] + jnp.arange(self.win)]  # (B, T, win)
        frames = frames - frames.mean(-1, keepdims=True)
        previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], -1)  # x[max(0, j - 1)]
        frames = (frames - PREEMPHASIS * previous) * self.window[...]
        frames = jnp.pad(frames, ((0, 0), (0, 0), (0, self.fft - self.win)))  # (B, T, fft)
        power = jnp.square(jnp.abs(jnp.fft.rfft(frames, axis=-1)))  # (B, T, fft/2 + 1)
        energies = jnp.matmul(power, self.mel_banks[...], precision="highest")  # (B, T, M)
        x = jnp.log(jnp.maximum(energies, jnp.finfo(jnp.float32).eps)).transpose(0, 2, 1)  # (B, M, T)
        mask = jnp.arange(T) < self.frames(lengths)[:, None]  # (B, T)
        x = mean_normalised(x, mask)
        if not self.deterministic and self.spec_augment:
            x = mask_along_axis(x, self.rngs(), self.freq_mask, axis=1)
            x = mask_along_axis(x, self.rngs(), self.time_mask, axis=2)
        return x, mask


def make_frontend(frontend: str, sample_rate: int, spec_augment: bool, *, rngs: nnx.Rngs) -> LogMel | Fbank:
    """The front end a config names: "logmel40" (LogMel) or "fbank80" (Fbank, WeSpeaker's)."""
    kinds = {"logmel40": LogMel, "fbank80": Fbank}
    if frontend not in kinds:
        raise ValueError(f"unknown voice front end {frontend!r}: expected one of {sorted(kinds)}")
    return kinds[frontend](sample_rate, spec_augment, rngs=rngs)
