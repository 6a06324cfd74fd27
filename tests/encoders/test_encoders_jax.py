"""Every jax encoder against its torch twin on converted weights (fp32), and the weight conversion itself.

A randomly initialised torch encoder's state dict is loaded into the jax twin with encoders.jax.convert.to_nnx;
then, in eval mode, tokens, mask and pooled equal torch's within 1e-5 (values of order 1) on a batch with
padded voices and texts of several lengths, a voice shorter than one window, and a sample whose voice, text
(length 0) and face (zeros) are missing. One train-mode step (dropout 0, no SpecAugment) gives equal outputs
and equal BatchNorm running statistics. torch -> jax -> torch conversion gives back the same bits.
"""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import encoders
from encoders.jax.convert import to_nnx, to_torch
from tests.encoders.batchnorm_torch import randomise_batchnorm

B, IMAGE, SAMPLES, LEN, VOCAB, DIM = 4, 16, 4800, 6, 50, 16  # 0.3 s voices at 16 kHz
VOICE_LEN = [SAMPLES, 3300, 300, 0]  # unpadded, padded, shorter than one 25 ms window (no frame), missing
TEXT_LEN = [LEN, 3, 1, 0]  # the last sample's text is missing
ATOL = 1e-5


def specs(dropout: float, spec_augment: bool) -> dict[str, dict]:
    return {
        "face_cnn": dict(dim=DIM, image_size=IMAGE),
        "face_vit": dict(dim=DIM, image_size=IMAGE, layers=2, heads=2, dropout=dropout),
        "voice_ecapa": dict(dim=DIM, sample_rate=16000, spec_augment=spec_augment),
        "voice_vit": dict(dim=DIM, sample_rate=16000, layers=2, heads=2, dropout=dropout, spec_augment=spec_augment),
        "text_tiny": dict(dim=DIM, vocab_size=VOCAB, max_len=LEN, layers=2, heads=2, dropout=dropout),
    }


SPECS = specs(dropout=0.1, spec_augment=True)  # as configured for training; eval mode turns both off
NAMES = list(SPECS)


def make_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    face = torch.rand(B, 3, IMAGE, IMAGE, generator=g)
    face[-1] = 0.0  # a missing face arrives as zeros
    voice = 0.1 * torch.randn(B, SAMPLES, generator=g)
    voice = torch.where(torch.arange(SAMPLES) < torch.tensor(VOICE_LEN)[:, None], voice, 0.0)  # zero padding
    return {
        "face": face,
        "voice": voice,
        "voice_len": torch.tensor(VOICE_LEN),
        "text_ids": torch.randint(0, VOCAB, (B, LEN), generator=g),
        "text_mask": torch.arange(LEN) < torch.tensor(TEXT_LEN)[:, None],
    }


def as_numpy(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The same batch for jax (NumPy arrays; integer ids and lengths as int32, jax's default)."""
    return {k: v.numpy().astype(np.int32) if v.dtype == torch.int64 else v.numpy() for k, v in batch.items()}


def torch_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in module.state_dict().items()}


def build_pair(name: str, spec: dict) -> tuple[torch.nn.Module, nnx.Module]:
    """A randomly initialised torch encoder and its jax twin holding the same (converted) weights."""
    torch.manual_seed(0)
    ref = encoders.build("torch", name, **spec)
    randomise_batchnorm(ref)
    # Built abstractly: the twin's own initialisers would only be overwritten, and on CPU their eager
    # compilation costs seconds per layer. to_nnx then fills every converted variable, reseed the RNG streams.
    enc = nnx.eval_shape(lambda: encoders.build("jax", name, **spec, rngs=nnx.Rngs(1)))
    assert type(enc).__name__ == type(ref).__name__ and type(enc).__module__ == f"encoders.jax.{name}"
    to_nnx(torch_state(ref), enc)
    nnx.reseed(enc, default=0)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(nnx.state(enc)))  # nothing left abstract
    return ref, enc


# One jitted call for every encoder and mode (compiled per encoder graph): faster than eager op-by-op
# dispatch here, and the way the trainer runs them. In train mode it updates the BatchNorm statistics.
forward = nnx.jit(lambda encoder, batch: encoder(batch))


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    return request.param, *build_pair(request.param, SPECS[request.param])


def max_abs_difference(a: encoders.EncoderOutput, b: encoders.EncoderOutput) -> float:
    return max(float(np.abs(np.asarray(x) - y.detach().numpy()).max()) for x, y in zip(a, b, strict=True))


def assert_same_outputs(out: encoders.EncoderOutput, ref: encoders.EncoderOutput) -> None:
    np.testing.assert_array_equal(np.asarray(out.mask), ref.mask.numpy())
    for part in ("tokens", "pooled"):
        x, y = np.asarray(getattr(out, part)), getattr(ref, part).detach().numpy()
        assert x.dtype == np.float32 and x.shape == y.shape
        assert 0.05 < np.abs(y).max() < 20  # not vanishing: an absolute tolerance of 1e-5 means something
        np.testing.assert_allclose(x, y, rtol=0, atol=ATOL, err_msg=part)


def test_eval_outputs_equal_torch(pair):
    name, ref, enc = pair
    batch = make_batch()
    with torch.no_grad():
        expected = ref.eval()(batch)
    enc.eval()
    out = forward(enc, as_numpy(batch))
    assert_same_outputs(out, expected)
    # the batch is what it claims: the summary is masked for the missing voice and text, and for a voice
    # shorter than one window (sample 2), while faces are always valid
    assert np.asarray(out.mask[:, 0]).tolist() == [True, True, not name.startswith("voice"), name.startswith("face")]


@pytest.mark.parametrize("name", ["face_cnn", "voice_ecapa"])  # the encoders with BatchNorm
def test_one_train_step_gives_equal_outputs_and_running_statistics(name):
    """Train mode (batch statistics in BatchNorm) with dropout 0 and no SpecAugment: equal outputs, and the
    BatchNorm running means / unbiased variances / batch counts updated alike (every other entry unchanged)."""
    ref, enc = build_pair(name, specs(dropout=0.0, spec_augment=False)[name])
    batch = make_batch()
    with torch.no_grad():
        expected = ref.train()(batch)
    enc.train()
    assert_same_outputs(forward(enc, as_numpy(batch)), expected)
    after, ref_after = to_torch(enc), torch_state(ref)
    assert after.keys() == ref_after.keys()
    for key, value in ref_after.items():
        np.testing.assert_allclose(after[key], value, rtol=0, atol=ATOL, err_msg=key)
    counts = [k for k in ref_after if k.endswith("num_batches_tracked")]
    assert counts and all(after[k] == 1 for k in counts)


def test_conversion_round_trip_is_bit_identical(pair):
    """torch state -> jax module -> torch state gives the same keys, shapes, float dtypes and bits, and
    loads strictly into the torch encoder."""
    name, ref, enc = pair
    state = torch_state(ref)
    back = to_torch(enc)
    assert back.keys() == state.keys()
    for key, value in state.items():
        assert back[key].shape == value.shape, key
        if value.dtype.kind == "f":
            assert back[key].dtype == value.dtype, key
        assert np.array_equal(back[key], value), key
    ref.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in back.items()}, strict=True)


def random_loss(out: encoders.EncoderOutput) -> jax.Array:
    """A loss on tokens and pooled with fixed random weights, so no parameter's gradient cancels by symmetry."""
    g = np.random.default_rng(1)
    return sum((x * g.standard_normal(x.shape, dtype=np.float32)).sum() for x in (out.tokens, out.pooled))


@nnx.jit
def loss_and_gradients(encoder: nnx.Module, batch: dict[str, np.ndarray]) -> tuple[jax.Array, nnx.State]:
    return nnx.value_and_grad(lambda encoder: random_loss(encoder(batch)))(encoder)


def test_training_gradients_are_finite_with_a_missing_text():
    """Train mode with dropout, on the batch whose last text is missing (attention over no real token, a
    mean over none): the outputs are finite and every parameter gets a finite, nonzero gradient.
    (One encoder only: each costs a compile.)"""
    _, enc = build_pair("text_tiny", SPECS["text_tiny"])
    enc.train()
    loss, grads = loss_and_gradients(enc, as_numpy(make_batch()))
    assert np.isfinite(loss)  # so every output is finite
    for path, g in nnx.to_flat_state(grads):
        g = np.asarray(g.get_value())
        assert np.isfinite(g).all() and np.abs(g).sum() > 0, path
