"""Log-mel front end of the voice encoders, with SpecAugment in training.

Frames are not centred (`center=False`): frame t covers samples [t*hop, t*hop + win), so a frame is
valid exactly when its whole window lies inside the first `voice_len` samples. Valid frames never see
padding, which makes everything downstream independent of how much zero padding follows the voice.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

N_MELS = 40
EPS = 1e-6  # log(power + EPS): keeps silence finite


class LogMel(nn.Module):
    """Waveform (B, S) -> mean-normalised log-mel features (B, M, T) and their frame mask (B, T).

    25 ms Hann windows every 10 ms, 40 mel bands, log(power + 1e-6), minus the per-utterance mean of
    each band over the valid frames (cepstral mean normalisation); padded frames are set to 0.
    In training with spec_augment=True, SpecAugment (Park et al. 2019) sets one random band of up to
    8 mels and one random span of up to 10 frames to 0 (the mean), independently per sample.
    """

    def __init__(self, sample_rate: int, spec_augment: bool):
        super().__init__()
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
        T = x.shape[-1]
        mask = torch.arange(T, device=x.device) < self.frames(lengths)[:, None]  # (B, T)
        keep = mask[:, None, :]  # (B, 1, T)
        mean = torch.where(keep, x, 0.0).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp_min(1)
        x = torch.where(keep, x - mean, 0.0)  # (B, M, T)
        if self.training and self.spec_augment:
            x = self.time_mask(self.freq_mask(x))
        return x, mask
