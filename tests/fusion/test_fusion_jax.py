"""fusion/jax/ against fusion/torch/ on converted weights: every module's streams, for 1, 2 and 3
modalities, on padded token masks and on samples with missing modalities, in eval mode (fp32)."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import fusion
from encoders import EncoderOutput
from encoders.jax.convert import to_nnx, to_torch

B, D, H = 4, 8, 2
# Tokens per modality: one count for all, since eager jax compiles each op once per shape (a third less test
# time); the padded lengths differ per sample and modality.
N = {"face": 5, "text": 5, "voice": 5}
KWARGS = {
    "early": dict(layers=2, heads=H, dropout=0.1),  # dropout > 0: eval mode must switch it off
    "stack": dict(tokens=3),
    "cross_attn": dict(layers=2, heads=H, dropout=0.1),
    "gated": {},
    "late": dict(combine="learned"),
}
# Modality sets, deliberately unsorted, and per sample which modality is present (sample 0: all).
CASES = {
    1: (("voice",), {"voice": [1, 1, 1, 0]}),  # sample 3: no modality at all
    2: (("voice", "face"), {"face": [1, 1, 0, 1], "voice": [1, 0, 1, 1]}),  # 1: face only, 2: voice only
    3: (("voice", "face", "text"), {"face": [1, 1, 1, 0], "text": [1, 1, 0, 1], "voice": [1, 0, 0, 1]}),
}


def random_output(m: str, present: torch.Tensor, gen: torch.Generator) -> EncoderOutput:
    """Tokens with a valid prefix of random length >= 1 per sample; where the modality is absent, huge
    tokens and pooled vectors (they must not leak) and, for text, an all-False mask (a zeroed text)."""
    lengths = torch.randint(1, N[m] + 1, (B,), generator=gen)
    mask = torch.arange(N[m])[None, :] < lengths[:, None]  # (B, N)
    if m == "text":
        mask &= present[:, None]
    scale = torch.where(present, 1.0, 100.0)  # (B,)
    tokens = torch.randn(B, N[m], D, generator=gen) * scale[:, None, None]
    return EncoderOutput(tokens, mask, torch.randn(B, D, generator=gen) * scale[:, None])


def to_jax(x: dict) -> dict:
    return {k: EncoderOutput(*(jnp.asarray(t.numpy()) for t in v)) for k, v in x.items()}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """(modalities, torch outputs, torch present, jax outputs, jax present) for 1, 2 or 3 modalities."""
    mods, pattern = CASES[request.param]
    gen = torch.Generator().manual_seed(request.param)
    present = {m: torch.tensor(pattern[m], dtype=torch.bool) for m in sorted(mods)}
    outputs = {m: random_output(m, present[m], gen) for m in sorted(mods)}
    present_jax = {m: jnp.asarray(p.numpy()) for m, p in present.items()}
    return mods, outputs, present, to_jax(outputs), present_jax


@functools.cache  # module-scoped: built and converted once per (module, modalities)
def twins(name: str, mods: tuple[str, ...]):
    torch.manual_seed(0)
    t = fusion.build("torch", name, dim=D, modalities=mods, **KWARGS[name]).eval()
    if name == "late":  # learned weights away from their uniform start, so that converting them matters
        t.weight_logits.data = torch.randn(len(mods))
    j = fusion.build("jax", name, dim=D, modalities=mods, **KWARGS[name], rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in t.state_dict().items()}, j)
    j.eval()
    return t, j


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_streams_equal_torch(case, name):
    mods, outputs, present, outputs_jax, present_jax = case
    t, j = twins(name, mods)
    with torch.no_grad():
        expected = t(outputs, present)
    got = j(outputs_jax, present_jax)
    assert tuple(got) == tuple(expected) == j.streams == t.streams
    assert j.learns_combination == t.learns_combination
    for s in expected:
        assert np.isfinite(np.asarray(got[s])).all()
        np.testing.assert_allclose(np.asarray(got[s]), expected[s].numpy(), atol=1e-5, rtol=0, err_msg=s)
    # The decision: late combines its streams' scores (test_combine_jax.py checks every rule), the others
    # pass the fused stream's scores through.
    gen = torch.Generator().manual_seed(len(mods))
    log_probs = {s: torch.randn(B, 5, generator=gen).log_softmax(-1) for s in expected}
    stream_present = present if name == "late" else {"fused": torch.stack(list(present.values())).any(0)}
    log_probs_jax = {s: jnp.asarray(v.numpy()) for s, v in log_probs.items()}
    stream_present_jax = {s: jnp.asarray(v.numpy()) for s, v in stream_present.items()}
    decision = j.combine(log_probs_jax, stream_present_jax)
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(decision), t.combine(log_probs, stream_present).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_round_trip_is_bit_identical(name):
    t, j = twins(name, CASES[3][0])
    state = {k: v.numpy() for k, v in t.state_dict().items()}
    back = to_torch(j)
    assert sorted(back) == sorted(state)
    for k in state:
        assert back[k].dtype == state[k].dtype and np.array_equal(back[k], state[k]), k
