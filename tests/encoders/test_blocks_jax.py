"""encoders/jax/blocks.py against encoders/torch/blocks.py on converted weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
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


def attention_inputs():
    """q (2, 3, 5, 4), k and v (2, 3, 6, 4), keep (2, 1, 1, 6): one row partly masked, one with every key, and
    a cotangent for the output."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 4)))
    keep = np.array([[1, 0, 1, 1, 0, 0], [1] * 6], bool)[:, None, None, :]
    return q, k, v, keep, rng.standard_normal((2, 3, 5, 4)).astype(np.float32)


def test_attention_and_its_gradient_equal_jax_nn_and_torch():
    """The hand-written backward against autodiff of jax.nn.dot_product_attention and against torch's SDPA."""
    q, k, v, keep, w = attention_inputs()

    def reference(q, k, v):  # jax.nn's layout is (B, N, H, Dh)
        bnhd = [x.transpose(0, 2, 1, 3) for x in (q, k, v)]
        return jax.nn.dot_product_attention(*bnhd, mask=keep).transpose(0, 2, 1, 3)

    def value_and_grads(f):
        return jax.value_and_grad(lambda q, k, v: (f(q, k, v) * w).sum(), argnums=(0, 1, 2))(q, k, v)

    ours = value_and_grads(lambda q, k, v: jb.attention(q, k, v, keep))
    theirs = value_and_grads(reference)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    torch_loss = (F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(keep)) * torch.tensor(w)).sum()
    torch_loss.backward()
    torch_values = [torch_loss, tq.grad, tk.grad, tv.grad]
    for a, b, c in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), torch_values, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
        close(a, c)
    assert np.abs(np.asarray(ours[1][1])[0, ..., [1, 4, 5], :]).max() == 0  # masked keys get no gradient


def test_attention_in_bf16_keeps_its_dtype_and_float32_scores():
    q, k, v, keep, w = attention_inputs()
    low = [jnp.asarray(x, jnp.bfloat16) for x in (q, k, v)]
    grads = jax.grad(lambda *x: (jb.attention(*x, keep) * w).sum(), argnums=(0, 1, 2))
    out, exact = jb.attention(*low, keep), jb.attention(*(x.astype(jnp.float32) for x in low), keep)
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads(*low))
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(exact), atol=3e-2)
    for g_low, g in zip(grads(*low), grads(*(x.astype(jnp.float32) for x in low)), strict=True):
        np.testing.assert_allclose(np.asarray(g_low, np.float32), np.asarray(g), atol=6e-2)


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
