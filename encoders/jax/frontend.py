"""Log-mel front end of the voice encoders, with SpecAugment in training.

Frames are not centred (`center=False`): frame t covers samples [t*hop, t*hop + win), so a frame is
valid exactly when its whole window lies inside the first `voice_len` samples. Valid frames never see
padding, which makes everything downstream independent of how much zero padding follows the voice.

The jnp twin of torchaudio's MelSpectrogram as the torch twin builds it: periodic Hann window, no
padding, |rfft|^2 (n_fft = window length), HTK mel filterbank without normalisation from 0 Hz to
Nyquist. Its window and filterbank are Buffers, converted from torch's `mel.spectrogram.window` and
`mel.mel_scale.fb` (encoders/jax/convert.py RENAMES).
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
        keep = mask[:, None, :]  # (B, 1, T)
        mean = jnp.where(keep, x, 0.0).sum(-1, keepdims=True) / jnp.maximum(keep.sum(-1, keepdims=True), 1)
        x = jnp.where(keep, x - mean, 0.0)  # (B, M, T)
        if not self.deterministic and self.spec_augment:
            x = mask_along_axis(x, self.rngs(), self.freq_mask, axis=1)
            x = mask_along_axis(x, self.rngs(), self.time_mask, axis=2)
        return x, mask
