"""encoders/jax/layers.py against the torch layers it stands for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from encoders.jax import layers
from encoders.jax.convert import to_nnx


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)])  # BatchNorm1d on (B, C) and (B, T, C)
def test_batchnorm_train_step_and_eval_match_torch(shape):
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4, momentum=0.3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    twin = layers.BatchNorm(4, momentum=0.3, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in bn.state_dict().items()}, twin)
    x = 3.0 * torch.randn(*shape) + 1.0  # channels last, as the jax layer takes it
    y_torch = bn(x if x.ndim == 2 else x.transpose(1, 2))  # torch wants (B, C, T)
    y_torch = y_torch if x.ndim == 2 else y_torch.transpose(1, 2)
    y_jax = twin(jnp.asarray(x.numpy()))
    np.testing.assert_allclose(np.asarray(y_jax), y_torch.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(twin.running_mean[...]), bn.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(twin.running_var[...]), bn.running_var.numpy(), atol=1e-5)
    assert int(twin.num_batches_tracked[...]) == int(bn.num_batches_tracked) == 1
    bn.eval()
    twin.eval()
    z = torch.randn(*shape)
    z_torch = bn(z if z.ndim == 2 else z.transpose(1, 2))
    z_torch = z_torch if z.ndim == 2 else z_torch.transpose(1, 2)
    np.testing.assert_allclose(np.asarray(twin(jnp.asarray(z.numpy()))), z_torch.detach().numpy(), atol=1e-5)


def test_initialisation_follows_torch():
    rngs = nnx.Rngs(0)
    lin, conv = layers.Linear(400, 300, rngs=rngs), layers.Conv1d(20, 30, 5, rngs=rngs)
    for kernel, bias, fan_in in [(lin.kernel, lin.bias, 400), (conv.kernel, conv.bias, 100)]:
        bound = 1 / np.sqrt(fan_in)
        for w in (np.asarray(kernel[...]), np.asarray(bias[...])):
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
            assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound  # U(-b, b) has std b / sqrt(3)
    emb = np.asarray(layers.Embed(100, 50, rngs=rngs).embedding[...])
    assert abs(emb.std() - 1.0) < 0.05
    ln = layers.LayerNorm(8, rngs=rngs)
    assert ln.epsilon == 1e-5


def test_gelu_is_torch_exact_gelu():
    x = np.linspace(-6, 6, 101, dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(layers.gelu(jnp.asarray(x))), nn.GELU()(torch.from_numpy(x)).numpy(), atol=1e-6
    )


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_is_torchs_form_with_nnx_dropouts_mask(rate):
    """x * (mask / (1 - rate)) as torch's kernel computes it, with the mask nnx.Dropout draws from the same key: the
    same zeros, the kept values within an ulp; the gradient is the scaled mask; identity in evaluation."""
    x = jax.random.normal(jax.random.key(1), (8, 50, 16))
    ours, theirs = layers.Dropout(rate, rngs=nnx.Rngs(dropout=3)), nnx.Dropout(rate, rngs=nnx.Rngs(dropout=3))
    y, expected = ours(x), theirs(x)
    assert np.array_equal(np.asarray(y) == 0, np.asarray(expected) == 0)
    assert abs((np.asarray(y) == 0).mean() - rate) < 0.03
    np.testing.assert_allclose(y, expected, rtol=2e-7, atol=0)
    np.testing.assert_allclose(y, x * (y != 0) / (1 - rate), rtol=2e-7, atol=0)
    grad = jax.grad(lambda x: layers.Dropout(rate, rngs=nnx.Rngs(dropout=3))(x).sum())(x)
    np.testing.assert_allclose(grad, (y != 0) / (1 - rate), rtol=0, atol=0)
    ours.eval()
    assert ours(x) is x
