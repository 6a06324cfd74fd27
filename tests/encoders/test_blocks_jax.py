"""encoders/jax/blocks.py against encoders/torch/blocks.py on converted weights."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from encoders.jax import blocks as jb
from encoders.jax.convert import to_nnx
from encoders.torch import blocks as tb

D, H = 8, 2


def twin(torch_module, jax_module):
    torch_module.eval()
    to_nnx({k: v.numpy() for k, v in torch_module.state_dict().items()}, jax_module)
    jax_module.eval()
    return torch_module, jax_module


def close(jax_value, torch_value, atol=1e-5):
    np.testing.assert_allclose(np.asarray(jax_value), torch_value.detach().numpy(), atol=atol)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, D, generator=g)
    context = torch.randn(3, 4, D, generator=g)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # row 1: nothing to see
    return x, context, mask


@pytest.mark.parametrize("null_key", [False, True])
def test_attention(inputs, null_key):
    x, context, mask = inputs
    torch.manual_seed(1)
    t, j = twin(tb.Attention(D, H, null_key), jb.Attention(D, H, null_key, rngs=nnx.Rngs(0)))
    close(j(jnp.asarray(x.numpy()), jnp.asarray(context.numpy()), jnp.asarray(mask.numpy())), t(x, context, mask))


def test_attention_with_null_key_and_empty_context(inputs):
    x, _, _ = inputs
    torch.manual_seed(2)
    t, j = twin(tb.Attention(D, H, null_key=True), jb.Attention(D, H, null_key=True, rngs=nnx.Rngs(0)))
    empty, none = x[:, :0], torch.zeros(3, 0, dtype=torch.bool)
    out = j(jnp.asarray(x.numpy()), jnp.asarray(empty.numpy()), jnp.asarray(none.numpy()))
    close(out, t(x, empty, none))
    assert np.isfinite(np.asarray(out)).all()


def test_transformer_and_pooling(inputs):
    x, _, _ = inputs
    mask = torch.tensor([[1, 1, 1, 0, 0], [0] * 5, [1] * 5], dtype=torch.bool)
    torch.manual_seed(3)
    t, j = twin(tb.Transformer(D, 2, H, 0.1), jb.Transformer(D, 2, H, 0.1, rngs=nnx.Rngs(0)))
    xj, mj = jnp.asarray(x.numpy()), jnp.asarray(mask.numpy())
    y_torch, y_jax = t(x, mask), j(xj, mj)
    close(y_jax, y_torch)
    close(jb.masked_mean(y_jax, mj), tb.masked_mean(y_torch, mask))
    out_t, out_j = tb.summarised(y_torch, mask, y_torch[:, 0]), jb.summarised(y_jax, mj, y_jax[:, 0])
    for a, b in zip(out_j, out_t, strict=True):
        close(a, b)


def test_block_with_null_key(inputs):
    x, _, _ = inputs
    mask = torch.tensor([[1, 0, 0, 0, 0], [0] * 5, [1] * 5], dtype=torch.bool)
    torch.manual_seed(4)
    t, j = twin(tb.Block(D, H, 0.0, null_key=True), jb.Block(D, H, 0.0, null_key=True, rngs=nnx.Rngs(0)))
    close(j(jnp.asarray(x.numpy()), jnp.asarray(mask.numpy())), t(x, mask))
