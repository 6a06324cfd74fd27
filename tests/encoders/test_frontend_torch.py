"""The log-mel front end against a plain NumPy log-mel, the Kaldi fbank front end against torchaudio's
kaldi.fbank per utterance, and SpecAugment only in training."""

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

import encoders
from encoders.torch.frontend import Fbank, LogMel, make_frontend

RATE, WIN, HOP, MELS = 16000, 400, 160, 40


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)  # HTK mel scale


def mel_filterbank() -> np.ndarray:
    """(WIN//2+1, MELS) triangular filters, unnormalised, centres equally spaced in mel from 0 to Nyquist."""
    freqs = np.linspace(0, RATE / 2, WIN // 2 + 1)
    edges = 700.0 * (10 ** (np.linspace(0, hz_to_mel(RATE / 2), MELS + 2) / 2595.0) - 1.0)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rise = (freqs[:, None] - lo) / (mid - lo)
    fall = (hi - freqs[:, None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rise, fall))


def numpy_logmel(wave: np.ndarray, length: int) -> np.ndarray:
    """(MELS, T): power spectra of Hann-windowed 25 ms frames every 10 ms, mel, log(+1e-6), minus the mean
    over the frames inside `length` samples; frames reaching past `length` are 0."""
    frames = (len(wave) - WIN) // HOP + 1
    valid = max(0, (length - WIN) // HOP + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)  # periodic Hann, as torch.hann_window
    spec = np.stack([np.abs(np.fft.rfft(wave[t * HOP : t * HOP + WIN] * window)) ** 2 for t in range(frames)])
    logmel = np.log(spec @ mel_filterbank() + 1e-6).T  # (MELS, T)
    out = np.zeros_like(logmel)
    out[:, :valid] = logmel[:, :valid] - logmel[:, :valid].mean(1, keepdims=True)
    return out


def voices() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(4000) / RATE
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(3, 4000, generator=g)  # (3, 4000)
    lengths = torch.tensor([4000, 2500, 1000])
    wave[1, 2500:] = 0
    wave[2, 1000:] = 0
    return wave, lengths


def test_logmel_matches_a_numpy_reference():
    wave, lengths = voices()
    feats, mask = LogMel(RATE, spec_augment=False).eval()(wave, lengths)
    assert feats.shape == (3, MELS, 23) and feats.dtype == torch.float32
    for i in range(3):
        expected = numpy_logmel(wave[i].double().numpy(), int(lengths[i]))
        np.testing.assert_allclose(feats[i].numpy(), expected, atol=1e-4, rtol=1e-4)
    assert mask.sum(1).tolist() == [23, 14, 4]  # (L - 400) // 160 + 1


def test_logmel_is_float32_under_bf16_autocast():
    wave, lengths = voices()
    frontend = LogMel(RATE, spec_augment=False).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = frontend(wave, lengths)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, frontend(wave, lengths)[0])


def masked_band_and_span(train: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For one sample (M, T): the mel rows and frame columns SpecAugment zeroed, checking that it changed
    nothing else."""
    zeroed = (train == 0) & (clean != 0)
    rows, cols = zeroed.all(1), zeroed.all(0)
    assert torch.equal(zeroed, rows[:, None] | cols[None, :]), "changes outside whole mel bands / frame spans"
    assert torch.equal(train[~zeroed], clean[~zeroed])
    return rows, cols


@pytest.mark.parametrize("name", ["voice_ecapa", "voice_vit"])
def test_spec_augment_masks_bands_and_spans_only_in_training(name):
    kw = dict(layers=1, heads=2, dropout=0.0) if name == "voice_vit" else {}
    torch.manual_seed(0)
    enc = encoders.build("torch", name, dim=16, sample_rate=RATE, spec_augment=True, **kw)
    g = torch.Generator().manual_seed(0)
    wave, lengths = 0.1 * torch.randn(8, 4000, generator=g), torch.full((8,), 4000)
    clean = LogMel(RATE, spec_augment=False)(wave, lengths)[0]  # (8, M, T)

    enc.eval()
    assert torch.equal(enc.frontend(wave, lengths)[0], clean)

    enc.train()
    train = enc.frontend(wave, lengths)[0]
    bands, spans = zip(*(masked_band_and_span(train[i], clean[i]) for i in range(8)), strict=True)
    widths = torch.stack(bands).sum(1), torch.stack(spans).sum(1)  # (8,) each
    assert widths[0].max() < 8 and widths[1].max() < 10  # torchaudio draws widths in [0, param)
    assert widths[0].sum() > 0 and widths[1].sum() > 0
    assert len({tuple(b.tolist()) for b in bands}) > 1  # independent masks per sample


def test_spec_augment_off_leaves_training_features_clean():
    wave, lengths = voices()
    frontend = LogMel(RATE, spec_augment=False).train()
    assert torch.equal(frontend(wave, lengths)[0], frontend.eval()(wave, lengths)[0])


def padded_voices(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, max length) noisy tones in [-1, 1], zero past each length, and the lengths (B,)."""
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    t = torch.arange(S) / RATE
    wave = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(len(lengths), S, generator=g)
    lengths = torch.tensor(lengths)
    return torch.where(torch.arange(S) < lengths[:, None], wave, 0.0), lengths


def test_fbank_equals_kaldi_fbank_of_each_utterance_minus_its_mean():
    """WeSpeaker's features (processor.compute_fbank at extraction, dither 0, then apply_cmvn), per utterance."""
    wave, lengths = padded_voices([8000, 5000, 3333, 1000, 400])
    feats, mask = Fbank(RATE, spec_augment=False).eval()(wave, lengths)
    assert feats.shape == (5, 80, 48) and feats.dtype == torch.float32
    assert mask.sum(1).tolist() == [48, 29, 19, 4, 1]  # (L - 400) // 160 + 1, Kaldi's snip_edges count
    for i, n in enumerate(mask.sum(1).tolist()):
        alone = wave[i : i + 1, : lengths[i]] * (1 << 15)  # WeSpeaker scales to the 16-bit range
        kw = dict(frame_length=25, frame_shift=10, dither=0.0, window_type="hamming")  # WeSpeaker's
        expected = kaldi.fbank(alone, num_mel_bins=80, **kw)
        expected = expected - expected.mean(0)  # (n, 80)
        np.testing.assert_allclose(feats[i, :, :n].T.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
        assert not feats[i, :, n:].any()


def test_make_frontend_names_the_two_front_ends():
    logmel, fbank = (make_frontend(name, RATE, spec_augment=False) for name in ("logmel40", "fbank80"))
    assert isinstance(logmel, LogMel) and logmel.bins == 40 and isinstance(fbank, Fbank) and fbank.bins == 80
    with pytest.raises(ValueError, match="mfcc"):
        make_frontend("mfcc", RATE, spec_augment=False)


def test_fbank_spec_augment_masks_bands_and_spans_only_in_training():
    wave, lengths = 0.1 * torch.randn(8, 4000, generator=torch.Generator().manual_seed(0)), torch.full((8,), 4000)
    frontend = Fbank(RATE, spec_augment=True)
    clean = frontend.eval()(wave, lengths)[0]
    torch.manual_seed(0)
    train = frontend.train()(wave, lengths)[0]
    bands, spans = zip(*(masked_band_and_span(train[i], clean[i]) for i in range(8)), strict=True)
    assert torch.stack(bands).sum(1).max() < 8 and torch.stack(spans).sum(1).max() < 10
    assert torch.stack(bands).sum() > 0 and torch.stack(spans).sum() > 0


@pytest.mark.parametrize("name", ["voice_ecapa", "voice_vit"])
def test_small_voice_encoders_take_the_fbank_front_end(name):
    kw = dict(layers=1, heads=2, dropout=0.0) if name == "voice_vit" else {}
    enc = encoders.build("torch", name, dim=16, sample_rate=RATE, spec_augment=False, frontend="fbank80", **kw)
    assert isinstance(enc.frontend, Fbank)
    wave, lengths = voices()
    out = enc.eval()(dict(voice=wave, voice_len=lengths))
    assert out.pooled.shape == (3, 16) and torch.isfinite(out.tokens).all()
