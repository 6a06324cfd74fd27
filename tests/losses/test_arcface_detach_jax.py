"""ArcFace with detach_margin in jax: the torch test's NumPy references (float64), then parity with the torch twin,
as a loss function and as a head built from the config field `--loss.arcface.detach_margin=true`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from losses.jax.arcface import arcface_loss, arcface_target
from losses.torch.arcface import arcface_loss as torch_arcface_loss
from tests.losses.test_arcface_detach_torch import case, softmax_grad_np
from tests.losses.test_heads_jax import assert_gradients_close, jax_loss_and_grads, torch_loss_and_grads, twins


@pytest.mark.parametrize("easy", [False, True])
def test_value_is_arcface_and_gradient_is_the_plain_softmax(easy, arcface_np, arc_target_np, cross_entropy):
    cos, labels = case()
    with jax.enable_x64(True):

        def f(c):
            return arcface_loss(c, jnp.asarray(labels), scale=64.0, margin=0.5, easy_margin=easy, detach_margin=True)[0]

        loss, grad = jax.jit(jax.value_and_grad(f))(jnp.asarray(cos))
    assert float(loss) == pytest.approx(arcface_np(cos, labels, 64.0, 0.5, easy, cross_entropy), rel=1e-10)
    np.testing.assert_allclose(
        np.asarray(grad), softmax_grad_np(cos, labels, 64.0, 0.5, easy, arc_target_np), atol=1e-10
    )


def test_target_slope_is_one():
    c = jnp.array([np.cos(np.pi - 0.5) + 1e-6, 0.3, -0.99, 0.999])
    slope = jax.grad(lambda x: arcface_target(x, margin=0.5, detach_margin=True).sum())(c)
    np.testing.assert_array_equal(np.asarray(slope), np.ones(4))


@pytest.mark.parametrize("easy", [False, True])
def test_loss_function_equals_torch(easy):
    cos, labels = case(3)
    cos = cos.astype(np.float32)
    loss, grad = jax.jit(
        jax.value_and_grad(
            lambda c: arcface_loss(c, jnp.asarray(labels), margin=0.5, easy_margin=easy, detach_margin=True)[0]
        )
    )(jnp.asarray(cos))
    c = torch.tensor(cos, requires_grad=True)
    reference, _ = torch_arcface_loss(c, torch.tensor(labels), margin=0.5, easy_margin=easy, detach_margin=True)
    reference.backward()
    assert float(loss) == pytest.approx(reference.item(), rel=1e-5)
    assert_gradients_close(grad, c.grad.numpy())


def test_head_from_the_config_field_equals_torch():
    torch_head, jax_head = twins("arcface", 4, None, "--loss.arcface.detach_margin=true")
    assert torch_head.detach_margin and jax_head.detach_margin
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 8)).astype(np.float32)
    labels, keep = np.arange(12) % 4, np.arange(12) != 5
    loss, logits, g_x, g_params = jax_loss_and_grads(jax_head)(x, labels, keep)
    t_loss, t_logits, t_g_x, t_params = torch_loss_and_grads(torch_head, x, labels, keep)
    np.testing.assert_allclose(np.asarray(loss), t_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), t_logits, rtol=1e-5, atol=1e-4)
    assert_gradients_close(g_x, t_g_x)
    assert_gradients_close(g_params["weight"], t_params["weight"])
