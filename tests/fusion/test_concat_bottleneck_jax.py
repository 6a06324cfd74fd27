"""fusion/jax/concat.py and bottleneck.py against their torch twins on converted weights, in eval mode
(fp32, eager), with every subset of modalities missing; and torch -> jax -> torch is bit-identical."""

import functools
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import fusion
from encoders import EncoderOutput
from encoders.jax.convert import to_nnx, to_torch

B, D, H, T = 8, 8, 2, 4  # one token count for every modality: eager jax compiles each op per shape
MODS = ("voice", "face", "text")  # deliberately unsorted
SUBSETS = np.array(list(itertools.product([False, True], repeat=3)))  # (8, 3): every subset, one per sample
KWARGS = {
    "concat-add": ("concat", dict(combine_features="add")),
    "concat-mul": ("concat", dict(combine_features="mul")),
    "concat-concat": ("concat", dict(combine_features="concat")),
    # dropout > 0: eval mode must switch it off; from layer 0 of 2 the streams exchange through the bottleneck
    "bottleneck-0": ("bottleneck", dict(layers=2, heads=H, dropout=0.1, bottleneck_tokens=2, fusion_from_layer=0)),
    "bottleneck-1": ("bottleneck", dict(layers=2, heads=H, dropout=0.1, bottleneck_tokens=2, fusion_from_layer=1)),
}


@pytest.fixture(scope="module")
def inputs():
    """Torch and jax (outputs, present): padded masks, and huge tokens / pooled vectors where absent."""
    gen = torch.Generator().manual_seed(0)
    present = {m: torch.tensor(SUBSETS[:, i]) for i, m in enumerate(sorted(MODS))}
    outputs = {}
    for m in sorted(MODS):
        mask = torch.arange(T)[None, :] < torch.randint(1, T + 1, (B,), generator=gen)[:, None]  # (B, T)
        scale = torch.where(present[m], 1.0, 100.0)  # (B,)
        tokens = torch.randn(B, T, D, generator=gen) * scale[:, None, None]
        outputs[m] = EncoderOutput(tokens, mask, torch.randn(B, D, generator=gen) * scale[:, None])
    outputs_jax = {m: EncoderOutput(*(jnp.asarray(t.numpy()) for t in o)) for m, o in outputs.items()}
    return outputs, present, outputs_jax, {m: jnp.asarray(p.numpy()) for m, p in present.items()}


@functools.cache  # module-scoped: built and converted once per module
def twins(name: str):
    module, kwargs = KWARGS[name]
    torch.manual_seed(0)
    t = fusion.build("torch", module, dim=D, modalities=MODS, **kwargs).eval()
    for p in t.parameters():  # LayerNorm affine away from (1, 0), so that converting it matters
        p.data += 0.1 * torch.randn(p.shape)
    j = fusion.build("jax", module, dim=D, modalities=MODS, **kwargs, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in t.state_dict().items()}, j)
    j.eval()
    return t, j


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_fused_equals_torch(inputs, name):
    outputs, present, outputs_jax, present_jax = inputs
    t, j = twins(name)
    with torch.no_grad():
        expected = t(outputs, present)["fused"].numpy()
    got = j(outputs_jax, present_jax)
    assert tuple(got) == j.streams == t.streams == ("fused",) and j.learns_combination == t.learns_combination
    assert np.isfinite(np.asarray(got["fused"])).all()
    np.testing.assert_allclose(np.asarray(got["fused"]), expected, atol=1e-5, rtol=0)


def test_bottleneck_stream_states_equal_torch(inputs):
    outputs, present, outputs_jax, present_jax = inputs
    t, j = twins("bottleneck-0")
    with torch.no_grad():
        expected = t.stream_states(outputs, present).numpy()  # (B, M, D)
    got = np.asarray(j.stream_states(outputs_jax, present_jax))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["concat-concat", "bottleneck-0"])
def test_round_trip_is_bit_identical(name):
    t, j = twins(name)
    state = {k: v.numpy() for k, v in t.state_dict().items()}
    back = to_torch(j)
    assert sorted(back) == sorted(state)
    for k in state:
        assert back[k].dtype == state[k].dtype and np.array_equal(back[k], state[k]), k
