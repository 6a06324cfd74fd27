"""jax LogMel against torchaudio's transform in the torch twin (random waveforms and the embedded dataset's
voices at every length the loader produces), and SpecAugment: bounds, independence, eval mode, reseeding.

The Kaldi fbank front end likewise against its torch twin and against torchaudio's kaldi.fbank in float64.

The jax front end is compared both as built (its own window and filterbank, to check their construction)
and on the torch twin's buffers converted by encoders/jax/convert.py (to check the rename of the keys).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchaudio
from flax import nnx
from torchaudio.compliance import kaldi

import encoders
from encoders.jax.convert import to_nnx
from encoders.jax.frontend import N_MELS, Fbank, LogMel, make_frontend, mask_along_axis
from encoders.torch import frontend as torch_frontend
from research.config import DataConfig, SyntheticConfig
from research.data import loader

RATE = 16000
B, S = 12, 4800  # one batch shape for every call here (and the dataset's): each new shape compiles anew
TOL = dict(rtol=1e-5, atol=1e-5)  # log-mel values are of order 1 (mean-normalised, up to ~10)


@pytest.fixture(scope="module")
def twin() -> torch_frontend.LogMel:
    return torch_frontend.LogMel(RATE, spec_augment=False).eval()


@pytest.fixture(scope="module")
def frontends(twin) -> dict[str, LogMel]:
    """The jax front end as built, and with the torch twin's window and filterbank converted into it."""
    built, converted = (LogMel(RATE, spec_augment=False, rngs=nnx.Rngs(0)) for _ in range(2))
    to_nnx({k: v.numpy() for k, v in twin.state_dict().items()}, converted)
    built.eval(), converted.eval()
    return {"built": built, "converted": converted}


def random_voices() -> tuple[np.ndarray, np.ndarray]:
    """(B, S) waveforms: unpadded, padded, exactly one window, shorter than one window, missing, loud, and
    lengths at and around frame boundaries."""
    g = np.random.default_rng(0)
    wave = 0.1 * g.standard_normal((B, S)).astype(np.float32)
    wave[5] *= 50.0
    lengths = np.array([S, 3300, 400, 300, 0, S, 559, 560, 561, 2000, 1000, S - 1])
    return np.where(np.arange(S) < lengths[:, None], wave, 0.0).astype(np.float32), lengths


@pytest.fixture(scope="module")
def dataset_voices(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """Every voice batch of a tiny embedded dataset, training crops and evaluation crops: (N, S), (N,)."""
    syn = SyntheticConfig(identities=4, samples_per_identity=3, missing=0.4)
    root = tmp_path_factory.mktemp("datasets")
    cfg = DataConfig(root=str(root), image_size=8, voice_seconds=0.3, batch_size=8, synthetic=syn)
    splits = loader.load(cfg)
    waves, lengths = [], []
    for part, train in ((splits.train, True), (splits.train, False), (splits.val, False)):
        for batch in part.batches(8, shuffle=False, seed=0, epoch=0, train=train):
            waves.append(batch["voice"])
            lengths.append(batch["voice_len"])
    waves, lengths = np.concatenate(waves), np.concatenate(lengths)
    assert waves.shape == (B, S)
    assert (lengths == S).any() and ((lengths > 0) & (lengths < S)).any() and (lengths == 0).any()
    return waves, lengths


def compare(frontend: LogMel, twin, wave: np.ndarray, lengths: np.ndarray) -> None:
    expected, expected_mask = twin(torch.from_numpy(wave), torch.from_numpy(lengths))
    feats, mask = frontend(jnp.asarray(wave), jnp.asarray(lengths, jnp.int32))
    assert feats.shape == expected.shape and feats.dtype == np.float32
    assert np.array_equal(np.asarray(mask), expected_mask.numpy())
    np.testing.assert_allclose(np.asarray(feats), expected.numpy(), **TOL)


def test_window_and_filterbank_equal_torchaudio(frontends, twin):
    built = frontends["built"]
    np.testing.assert_allclose(built.hann_window[...], twin.mel.spectrogram.window.numpy(), atol=1e-6, rtol=0)
    fb = torchaudio.functional.melscale_fbanks(201, 0.0, RATE // 2, N_MELS, RATE).numpy()  # torchaudio's defaults
    np.testing.assert_allclose(built.mel_filterbank[...], fb, atol=1e-6, rtol=0)  # equal at 16 kHz
    assert np.array_equal(frontends["converted"].mel_filterbank[...], twin.mel.mel_scale.fb.numpy())


@pytest.mark.parametrize("name", ["built", "converted"])
def test_logmel_equals_torchaudio_on_random_waveforms(frontends, twin, name):
    compare(frontends[name], twin, *random_voices())


@pytest.mark.parametrize("name", ["built", "converted"])
def test_logmel_equals_torchaudio_on_dataset_voices(frontends, twin, dataset_voices, name):
    compare(frontends[name], twin, *dataset_voices)


def test_frames_rule():
    frontend = LogMel(RATE, spec_augment=False, rngs=nnx.Rngs(0))
    lengths = np.array([0, 399, 400, 559, 560, S])
    assert np.asarray(frontend.frames(lengths)).tolist() == [0, 0, 1, 1, 2, 28]  # (L - 400) // 160 + 1, >= 0


def zeroed_bands_and_spans(train: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one sample (M, T): the mel rows and frame columns SpecAugment zeroed, checking it changed nothing else."""
    zeroed = (train == 0) & (clean != 0)
    rows, cols = zeroed.all(1), zeroed.all(0)
    assert np.array_equal(zeroed, rows[:, None] | cols[None, :]), "changes outside whole mel bands / frame spans"
    assert np.array_equal(train[~zeroed], clean[~zeroed])
    return rows, cols


def test_spec_augment_masks_one_band_and_one_span_per_sample_only_in_training():
    g = np.random.default_rng(1)
    wave, lengths = jnp.asarray(0.1 * g.standard_normal((B, S)), jnp.float32), jnp.full(B, S)
    frontend = LogMel(RATE, spec_augment=True, rngs=nnx.Rngs(0, augment=1))
    frontend.eval()
    clean = np.asarray(frontend(wave, lengths)[0])  # (B, M, T)
    assert np.array_equal(np.asarray(frontend(wave, lengths)[0]), clean)  # eval: no masks

    frontend.train()
    train = np.asarray(frontend(wave, lengths)[0])
    bands, spans = map(np.stack, zip(*(zeroed_bands_and_spans(train[i], clean[i]) for i in range(B)), strict=True))
    for masks, limit in ((bands, 8), (spans, 10)):
        widths = masks.sum(1)  # (B,)
        assert widths.max() < limit and widths.sum() > 0  # torchaudio draws widths in [0, limit)
        runs = np.diff(masks.astype(int), axis=1)
        assert ((runs == 1).sum(1) + masks[:, 0] <= 1).all()  # one contiguous band / span per sample
    assert len({tuple(b) for b in bands.tolist()}) > 1 and len({tuple(s) for s in spans.tolist()}) > 1  # per sample

    off = LogMel(RATE, spec_augment=False, rngs=nnx.Rngs(0, augment=1))
    off.train()
    assert np.array_equal(np.asarray(off(wave, lengths)[0]), clean)


def test_spec_augment_is_reproduced_after_reseeding():
    wave, lengths = map(jnp.asarray, random_voices())
    frontend = LogMel(RATE, spec_augment=True, rngs=nnx.Rngs(0, augment=1))
    nnx.reseed(frontend, augment=7)
    first = np.asarray(frontend(wave, lengths)[0])
    second = np.asarray(frontend(wave, lengths)[0])  # the stream moved on: other masks
    nnx.reseed(frontend, augment=7)
    again = np.asarray(frontend(wave, lengths)[0])
    nnx.reseed(frontend, augment=8)
    other = np.asarray(frontend(wave, lengths)[0])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second) and not np.array_equal(first, other)


def test_mask_widths_and_starts_follow_torchaudios_distribution():
    """Many draws on ones (N, 40, 1) (mel bands) and (N, 1, 50) (frames): the histogram of widths and the
    mean start of the jax masks equal those of torchaudio's mask_along_axis_iid, up to the sampling error."""
    n = 20000
    torch.manual_seed(0)
    for axis, width, x in ((1, 8, np.ones((n, 40, 1), np.float32)), (2, 10, np.ones((n, 1, 50), np.float32))):
        ours = np.asarray(mask_along_axis(jnp.asarray(x), nnx.Rngs(3).augment(), width, axis)) == 0
        theirs = torchaudio.functional.mask_along_axis_iid(torch.from_numpy(x), width, 0.0, axis).numpy() == 0
        stats = []
        for masked in (ours, theirs):
            line = masked.any(3 - axis)  # (N, size): the masked bands (axis 1) or frames (axis 2)
            widths = line.sum(1)
            starts = line.argmax(1)[widths > 0]
            stats.append((np.bincount(widths, minlength=width) / n, starts.mean()))
        (h1, s1), (h2, s2) = stats
        assert len(h1) == width and np.abs(h1 - 1 / width).max() < 0.012  # uniform widths 0..width-1
        assert np.abs(h1 - h2).max() < 0.015 and abs(s1 - s2) < 0.03 * s2


@pytest.fixture(scope="module")
def fbank_twin() -> torch_frontend.Fbank:
    return torch_frontend.Fbank(RATE, spec_augment=False).eval()


def test_fbank_window_and_mel_banks_equal_torchaudios(fbank_twin):
    built = Fbank(RATE, spec_augment=False, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(built.window[...], fbank_twin.window.numpy(), atol=1e-6, rtol=0)
    # numpy's float32 log and torch's differ by an ulp at some frequencies (5e-4 mel): weights move by < 3e-5.
    np.testing.assert_allclose(built.mel_banks[...], fbank_twin.mel_banks.numpy(), atol=3e-5, rtol=0)


@pytest.mark.parametrize("converted", [False, True])
def test_fbank_equals_the_torch_twin_and_kaldi_in_float64(fbank_twin, converted):
    """Both twins are float32 and equally close to kaldi.fbank in float64: white noise's lowest mel bands hold ~1e-3
    of its power after pre-emphasis, so float32 FFT rounding shows there, by up to 1.7e-4 for torch's and 6.7e-5 for
    jax's on an AMD EPYC (2026-12-07; under 1e-4 for both on an earlier machine); padded frames are equal."""
    frontend = Fbank(RATE, spec_augment=False, rngs=nnx.Rngs(0))
    if converted:
        to_nnx({k: v.numpy() for k, v in fbank_twin.state_dict().items()}, frontend)
    frontend.eval()
    wave, lengths = random_voices()
    wave /= np.abs(wave).max()  # in [-1, 1], as the loader gives
    expected, expected_mask = fbank_twin(torch.from_numpy(wave), torch.from_numpy(lengths))
    feats, mask = frontend(jnp.asarray(wave), jnp.asarray(lengths, jnp.int32))
    assert np.array_equal(np.asarray(mask), expected_mask.numpy())
    np.testing.assert_allclose(np.asarray(feats), expected.numpy(), rtol=1e-5, atol=3e-4)
    for i in np.flatnonzero(lengths >= fbank_twin.window.numel()):  # every utterance with a frame, padded or not
        alone = torch.from_numpy(wave[i : i + 1, : lengths[i]]).double() * (1 << 15)
        exact = kaldi.fbank(alone, num_mel_bins=80, dither=0.0, window_type="hamming")
        exact = (exact - exact.mean(0)).T.numpy()  # (80, n)
        n = exact.shape[1]
        for got in (np.asarray(feats[i]), expected[i].numpy()):
            np.testing.assert_allclose(got[:, :n], exact, rtol=1e-5, atol=3e-4)
        np.testing.assert_array_equal(np.asarray(feats[i, :, n:]), expected[i, :, n:].numpy())


def test_make_frontend_and_fbank_spec_augment():
    assert make_frontend("logmel40", RATE, False, rngs=nnx.Rngs(0)).bins == 40
    frontend = make_frontend("fbank80", RATE, True, rngs=nnx.Rngs(0, augment=1))
    assert isinstance(frontend, Fbank) and frontend.bins == 80
    with pytest.raises(ValueError, match="mfcc"):
        make_frontend("mfcc", RATE, False, rngs=nnx.Rngs(0))
    wave, lengths = jnp.asarray(random_voices()[0]), jnp.full(B, S)  # unpadded: masked bands span every frame
    frontend.eval()
    clean = np.asarray(frontend(wave, lengths)[0])
    frontend.train()
    train = np.asarray(frontend(wave, lengths)[0])
    for i in range(B):
        zeroed_bands_and_spans(train[i], clean[i])
    assert not np.array_equal(train, clean)


@pytest.mark.parametrize("name", ["voice_ecapa", "voice_vit"])
def test_small_voice_encoders_with_fbank_convert_from_their_torch_twins(name):
    """Same keys and shapes (the stem follows the front end's 80 bins; its buffers convert by name)."""
    kw = dict(dim=16, sample_rate=RATE, spec_augment=False, frontend="fbank80")
    kw |= dict(layers=1, heads=2, dropout=0.0) if name == "voice_vit" else {}
    state = {k: v.numpy() for k, v in encoders.build("torch", name, **kw).state_dict().items()}
    enc = nnx.eval_shape(lambda: encoders.build("jax", name, **kw, rngs=nnx.Rngs(0)))  # structure only
    to_nnx(state, enc)
    assert isinstance(enc.frontend, Fbank) and np.array_equal(enc.frontend.mel_banks[...], state["frontend.mel_banks"])
