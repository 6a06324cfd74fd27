"""Late fusion's score combinations in jax against the torch twin (converted learned weights) and by
hand; masked softmax against its torch twin; channel stacking's masked adaptive pooling against torch's
adaptive_avg_pool1d."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import fusion
from encoders.jax.convert import to_nnx
from fusion.jax.blocks import masked_softmax
from fusion.jax.stack import masked_adaptive_pool
from fusion.torch import blocks as torch_blocks

B, C, D = 5, 6, 8
STREAMS = ("face", "text", "voice")
# Sample 0: all present; 1: text missing; 2: only voice; 3: face missing; 4: none (-> uniform).
PRESENT = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=bool)  # (B, M)


def late(backend: str, combine: str, modalities=("voice", "face", "text")):
    rngs = {"rngs": nnx.Rngs(0)} if backend == "jax" else {}
    return fusion.build(backend, "late", dim=D, modalities=modalities, combine=combine, **rngs)


@pytest.mark.parametrize("streams", [STREAMS[2:], STREAMS[1:], STREAMS], ids=len)
@pytest.mark.parametrize("rule", ["mean", "product", "learned"])
def test_combine_equals_torch(rule, streams):
    torch.manual_seed(0)
    t, j = late("torch", rule, streams), late("jax", rule, streams)
    if rule == "learned":
        t.weight_logits.data = torch.tensor([0.3, -1.2, 0.8][: len(streams)])
    to_nnx({k: v.numpy() for k, v in t.state_dict().items()}, j)
    lp = np.random.default_rng(len(streams)).normal(size=(len(streams), B, C)).astype(np.float32) * 2
    log_probs = {s: torch.tensor(lp[i]).log_softmax(-1) for i, s in enumerate(streams)}
    columns = [STREAMS.index(s) for s in streams]
    present = {s: torch.tensor(PRESENT[:, c]) for s, c in zip(streams, columns, strict=True)}
    got = j.combine(
        {s: jnp.asarray(v.numpy()) for s, v in log_probs.items()},
        {s: jnp.asarray(v.numpy()) for s, v in present.items()},
    )
    with torch.no_grad():
        expected = t.combine(log_probs, present).numpy()
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(got)[4], np.log(np.full(C, 1 / C)), atol=1e-6)  # nothing present
    assert j.learns_combination == (rule == "learned")


def test_mean_and_product_by_hand():
    """Two streams with p = (0.8, 0.2) and (0.4, 0.6): mean (0.6, 0.4); product (0.32, 0.12) / 0.44."""
    log_probs = {"face": jnp.log(jnp.array([[0.8, 0.2]])), "voice": jnp.log(jnp.array([[0.4, 0.6]]))}
    present = {"face": jnp.array([True]), "voice": jnp.array([True])}
    mean = late("jax", "mean", ("face", "voice")).combine(log_probs, present)
    product = late("jax", "product", ("face", "voice")).combine(log_probs, present)
    np.testing.assert_allclose(np.exp(np.asarray(mean[0])), [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(product[0])), [0.32 / 0.44, 0.12 / 0.44], rtol=1e-6)


def test_masked_softmax_equals_torch():
    """Masked entries get weight exactly 0 and a row with nothing kept all zeros, as in torch."""
    logits = np.random.default_rng(0).normal(size=(B, 3)).astype(np.float32) * 3
    logits[1, 1] = 1e30  # a huge masked logit must not take the weight
    got = np.asarray(masked_softmax(jnp.asarray(logits), jnp.asarray(PRESENT)))
    expected = torch_blocks.masked_softmax(torch.tensor(logits), torch.tensor(PRESENT)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert np.array_equal(got == 0, ~PRESENT) and not got[4].any()


def test_unknown_combination_is_an_error():
    with pytest.raises(ValueError, match="combine"):
        late("jax", "max")


@pytest.mark.parametrize("length", [0, 1, 2, 3, 5, 7, 9])
def test_masked_adaptive_pool_matches_adaptive_avg_pool_on_valid_tokens(length):
    """Valid tokens scattered (not a prefix) among NaN padding: the result equals adaptive_avg_pool1d
    over the valid tokens taken in order, and is zero when there is none."""
    gen = torch.Generator().manual_seed(length)
    n, t = 12, 4
    keep = torch.zeros(1, n, dtype=torch.bool)
    keep[0, torch.randperm(n, generator=gen)[:length]] = True
    x = torch.randn(1, n, D, generator=gen)
    x[~keep] = float("nan")  # padding must not leak, even when not finite
    got = np.asarray(masked_adaptive_pool(jnp.asarray(x.numpy()), jnp.asarray(keep.numpy()), t))  # (1, T, D)
    if length == 0:
        assert np.array_equal(got, np.zeros((1, t, D)))
    else:
        expected = F.adaptive_avg_pool1d(x[keep].T[None], t)[0].T  # (T, D)
        np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-6)
