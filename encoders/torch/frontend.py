"""Front ends of the voice encoders (log-mel, Kaldi fbank), with SpecAugment in training.

Frames are not centred (`center=False`): frame t covers samples [t*hop, t*hop + win), so a frame is
valid exactly when its whole window lies inside the first `voice_len` samples. Valid frames never see
padding, which makes everything downstream independent of how much zero padding follows the voice.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torchaudio.compliance import kaldi

N_MELS = 40
EPS = 1e-6  # log(power + EPS): keeps silence finite
FBANK_BINS = 80  # WeSpeaker's fbank80
PREEMPHASIS = 0.97  # Kaldi's default
WAVE_SCALE = 1 << 15  # WeSpeaker scales [-1, 1] waveforms to the 16-bit range before Kaldi's fbank


def mean_normalised(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, M, T) minus its mean over the valid frames of mask (B, T) per band; padded frames 0."""
    keep = mask[:, None, :]  # (B, 1, T)
    mean = torch.where(keep, x, 0.0).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(keep, x - mean, 0.0)


class LogMel(nn.Module):
    """Waveform (B, S) -> mean-normalised log-mel features (B, M, T) and their frame mask (B, T).

    25 ms Hann windows every 10 ms, 40 mel bands, log(power + 1e-6), minus the per-utterance mean of
    each band over the valid frames (cepstral mean normalisation); padded frames are set to 0.
    In training with spec_augment=True, SpecAugment (Park et al. 2019) sets one random band of up to
    8 mels and one random span of up to 10 frames to 0 (the mean), independently per sample.
    """

    def __init__(self, sample_rate: int, spec_augment: bool):
        super().__init__()
        self.bins = N_MELS
        self.win = round(0.025 * sample_rate)
        self.hop = round(0.010 * sample_rate)
        self.spec_augment = spec_augment
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=self.win, hop_length=self.hop, n_mels=N_MELS, center=False
        )
        self.freq_mask = torchaudio.transforms.FrequencyMasking(8, iid_masks=True)
        self.time_mask = torchaudio.transforms.TimeMasking(10, iid_masks=True)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames (B,) of waveforms with `lengths` valid samples: windows that fit inside them."""
        return ((lengths - self.win) // self.hop + 1).clamp_min(0)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wave (B, S) float, lengths (B,) int -> features (B, M, T) float32, mask (B, T) bool."""
        # The STFT and the log need float32: bf16 would quantise the log-power to ~3 significant digits.
        with torch.autocast(wave.device.type, enabled=False):
            power = self.mel(wave.float())  # (B, M, T)
        x = torch.log(power + EPS)
        mask = torch.arange(x.shape[-1], device=x.device) < self.frames(lengths)[:, None]  # (B, T)
        x = mean_normalised(x, mask)  # (B, M, T)
        if self.training and self.spec_augment:
            x = self.time_mask(self.freq_mask(x))
        return x, mask


class Fbank(nn.Module):
    """Waveform (B, S) -> Kaldi log mel filterbank features (B, 80, T), mean-normalised, and the frame mask (B, T).

    WeSpeaker's front end (wespeaker/dataset/processor.py compute_fbank + apply_cmvn): the waveform times 2^15,
    then torchaudio.compliance.kaldi.fbank with 80 bins, 25 ms frames every 10 ms, snip_edges (frame t covers
    samples [t*hop, t*hop + win)), each frame minus its mean (DC offset), pre-emphasis 0.97, a Hamming window
    (WeSpeaker's window_type for its own models; Kaldi's default is 'povey'), zero padding to 512 samples,
    |rfft|^2, Kaldi's mel banks (20 Hz to Nyquist), log(max(energy, float32 eps)); then the mean over the valid
    frames is subtracted per bin (WeSpeaker's CMN, without variance normalisation); padded frames are 0.
    No dither: WeSpeaker trains with dither 1.0 and extracts with 0.0; here the features are deterministic.
    The energy floor only affects Kaldi's log-energy column, which fbank80 (use_energy False) does not output.
    SpecAugment in training as LogMel's.
    """

    def __init__(self, sample_rate: int, spec_augment: bool):
        super().__init__()
        self.bins = FBANK_BINS
        self.win = int(sample_rate * 0.025)  # Kaldi truncates
        self.hop = int(sample_rate * 0.010)
        self.fft = 1 << (self.win - 1).bit_length()  # the next power of two
        self.spec_augment = spec_augment
        window = torch.hamming_window(self.win, periodic=False, alpha=0.54, beta=0.46)
        banks, _ = kaldi.get_mel_banks(FBANK_BINS, self.fft, float(sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0)
        self.register_buffer("window", window)  # (win,)
        self.register_buffer("mel_banks", nn.functional.pad(banks, (0, 1)).T.contiguous())  # (fft/2 + 1, M)
        self.freq_mask = torchaudio.transforms.FrequencyMasking(8, iid_masks=True)
        self.time_mask = torchaudio.transforms.TimeMasking(10, iid_masks=True)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames (B,) of waveforms with `lengths` valid samples: windows that fit inside them."""
        return ((lengths - self.win) // self.hop + 1).clamp_min(0)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wave (B, S) float, lengths (B,) int -> features (B, M, T) float32, mask (B, T) bool."""
        with torch.autocast(wave.device.type, enabled=False):
            frames = (wave.float() * WAVE_SCALE).unfold(-1, self.win, self.hop)  # (B, T, win)
            frames = frames - frames.mean(-1, keepdim=True)
            previous = torch.cat([frames[..., :1], frames[..., :-1]], -1)  # x[max(0, j - 1)]
            frames = (frames - PREEMPHASIS * previous) * self.window
            frames = nn.functional.pad(frames, (0, self.fft - self.win))  # (B, T, fft)
            power = torch.fft.rfft(frames).abs().pow(2.0)  # (B, T, fft/2 + 1)
            energies = torch.matmul(power, self.mel_banks)  # (B, T, M)
            x = energies.clamp_min(torch.finfo(torch.float32).eps).log().transpose(1, 2)  # (B, M, T)
        mask = torch.arange(x.shape[-1], device=x.device) < self.frames(lengths)[:, None]  # (B, T)
        x = mean_normalised(x, mask)
        if self.training and self.spec_augment:
            x = self.time_mask(self.freq_mask(x))
        return x, mask


def make_frontend(frontend: str, sample_rate: int, spec_augment: bool) -> LogMel | Fbank:
    """The front end a config names: "logmel40" (LogMel) or "fbank80" (Fbank, WeSpeaker's)."""
    kinds = {"logmel40": LogMel, "fbank80": Fbank}
    if frontend not in kinds:
        raise ValueError(f"unknown voice front end {frontend!r}: expected one of {sorted(kinds)}")
    return kinds[frontend](sample_rate, spec_augment)
