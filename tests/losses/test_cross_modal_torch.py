"""Symmetric InfoNCE and the sigmoid loss against their published formulas in NumPy."""

import math

import numpy as np
import pytest
import torch

from losses.torch.cross_modal import CrossModal, info_nce_loss, sigmoid_loss


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("with_labels", [False, True])
def test_info_nce_matches_numpy_and_gradcheck(with_labels, numeric_grad, info_nce_np):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    labels = np.array([0, 1, 0, 2, 1]) if with_labels else None
    tl = None if labels is None else torch.tensor(labels)
    ta = torch.tensor(a, requires_grad=True)
    loss, logits = info_nce_loss(ta, torch.tensor(b), math.log(7.0), tl)
    loss.backward()
    assert loss.item() == pytest.approx(info_nce_np(a, b, 7.0, labels), rel=1e-10)
    np.testing.assert_allclose(ta.grad.numpy(), numeric_grad(lambda x: info_nce_np(x, b, 7.0, labels), a), atol=1e-7)
    scale = torch.tensor(math.log(7.0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, s: info_nce_loss(x, torch.tensor(b), s, tl)[0], (ta.detach().requires_grad_(), scale)
    )


@pytest.mark.parametrize("with_labels", [False, True])
def test_sigmoid_matches_numpy_and_gradcheck(with_labels, numeric_grad, sigmoid_np):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    labels = np.array([1, 1, 0, 2]) if with_labels else None
    tl = None if labels is None else torch.tensor(labels)
    ta = torch.tensor(a, requires_grad=True)
    loss, _ = sigmoid_loss(ta, torch.tensor(b), math.log(10.0), -3.0, tl)
    loss.backward()
    assert loss.item() == pytest.approx(sigmoid_np(a, b, 10.0, -3.0, labels), rel=1e-10)
    np.testing.assert_allclose(
        ta.grad.numpy(), numeric_grad(lambda x: sigmoid_np(x, b, 10.0, -3.0, labels), a), atol=1e-7
    )
    t, bias = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (math.log(10.0), -3.0))
    assert torch.autograd.gradcheck(
        lambda x, s, c: sigmoid_loss(x, torch.tensor(b), s, c, tl)[0], (ta.detach().requires_grad_(), t, bias)
    )


def test_hand_worked_single_pair():
    # One pair: InfoNCE over a single candidate is 0; sigmoid: -log sigmoid(scale * cos + bias).
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert info_nce_loss(a, b, 0.0)[0].item() == 0.0
    assert sigmoid_loss(a, b, 0.0, 1.0)[0].item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_module_initialisation_and_clamped_temperature():
    infonce, sig = CrossModal(), CrossModal("sigmoid")
    assert infonce.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert sig.logit_scale.exp().item() == pytest.approx(10.0) and sig.bias.item() == -10.0
    a = torch.randn(4, 3)
    with torch.no_grad():
        infonce.logit_scale.fill_(10.0)  # e^10 > 100: the logits are capped at 100 cos
    _, logits = infonce(a, a)
    torch.testing.assert_close(logits.diagonal(), torch.full((4,), 100.0))
    with pytest.raises(ValueError):
        CrossModal("triplet")
