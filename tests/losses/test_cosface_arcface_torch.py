"""CosFace and ArcFace against NumPy formulas written with theta = arccos(cos)."""

import numpy as np
import pytest
import torch

from losses.torch.arcface import Arcface, arcface_loss, arcface_target
from losses.torch.cosface import Cosface, cosface_loss


def random_case(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.98, 0.98, (6, 5)), rng.integers(0, 5, 6)


def test_cosface_loss_and_gradient(cross_entropy, numeric_grad, cosface_np):
    cos, labels = random_case(0)
    c = torch.tensor(cos, requires_grad=True)
    loss, _ = cosface_loss(c, torch.tensor(labels), scale=64.0, margin=0.35)
    loss.backward()
    assert loss.item() == pytest.approx(cosface_np(cos, labels, 64.0, 0.35, cross_entropy), rel=1e-10)
    grad = numeric_grad(lambda a: cosface_np(a, labels, 64.0, 0.35, cross_entropy), cos)
    np.testing.assert_allclose(c.grad.numpy(), grad, atol=1e-6)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_loss_and_gradient(easy, cross_entropy, numeric_grad, arcface_np):
    cos, labels = random_case(1)
    # Keep the target cosines off the branch points, where the gradient jumps.
    rows = np.arange(6)
    cos[rows, labels] = np.array([0.9, 0.5, -0.3, -0.95, 0.1, -0.6])
    c = torch.tensor(cos, requires_grad=True)
    loss, _ = arcface_loss(c, torch.tensor(labels), scale=64.0, margin=0.5, easy_margin=easy)
    loss.backward()
    assert loss.item() == pytest.approx(arcface_np(cos, labels, 64.0, 0.5, easy, cross_entropy), rel=1e-10)
    grad = numeric_grad(lambda a: arcface_np(a, labels, 64.0, 0.5, easy, cross_entropy), cos)
    np.testing.assert_allclose(c.grad.numpy(), grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_target_over_the_whole_range_including_plus_minus_one(easy, arc_target_np):
    theta = np.linspace(0, np.pi, 1001)
    c = np.cos(theta)
    c[0], c[-1] = 1.0, -1.0
    x = torch.tensor(c, requires_grad=True)
    phi = arcface_target(x, margin=0.5, easy_margin=easy)
    phi.sum().backward()
    np.testing.assert_allclose(phi.detach().numpy(), arc_target_np(c, 0.5, easy), atol=1e-6)
    assert torch.isfinite(x.grad).all()
    if not easy:  # the default never increases with theta: theta + m > pi is handled
        assert np.all(np.diff(phi.detach().numpy()) <= 1e-12)


def test_arcface_hand_worked_values():
    # theta = 0 -> cos(0.5); theta = pi -> default fallback -1 - 0.5 sin(0.5); easy: cos(pi) = -1.
    x = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(
        arcface_target(x, margin=0.5).numpy(), [np.cos(0.5), -1 - 0.5 * np.sin(0.5), -np.sin(0.5)], atol=1e-6
    )
    np.testing.assert_allclose(
        arcface_target(x, margin=0.5, easy_margin=True).numpy(), [np.cos(0.5), -1.0, 0.0], atol=1e-6
    )


@pytest.mark.parametrize("head_class", [Cosface, Arcface])
def test_head_gradcheck_in_float64(head_class):
    torch.manual_seed(0)
    head = head_class(4, 3, scale=8.0).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: head(e, torch.tensor([0, 1, 2]))[0], (x,))
    assert torch.autograd.gradcheck(
        lambda w: type(head).forward(head, x.detach(), torch.tensor([0, 1, 2]))[0], (head.weight,)
    )


@pytest.mark.parametrize("head_class", [Cosface, Arcface])
def test_embedding_on_its_centre_gives_finite_gradients(head_class):
    head = head_class(4, 3)
    x = head.weight.detach()[[1]].clone().requires_grad_(True) * 3.0  # cos = 1 with its own class
    loss, _ = head(x, torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("norm", [0.0, 1e20])
@pytest.mark.parametrize("head_class", [Cosface, Arcface])
def test_head_with_zero_and_huge_norm_features(head_class, norm, cross_entropy, cosface_np, arcface_np):
    # A zero feature has cosine 0 with every centre (by convention); a huge one the cosines of its direction.
    rng = np.random.default_rng(3)
    head = head_class(4, 3)
    x, labels = rng.normal(size=(5, 4)), np.array([0, 1, 2, 2, 0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = head.weight.detach().double().numpy()
    cos = x @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T * (norm > 0)
    loss, _ = head(torch.tensor(x * norm, dtype=torch.float32), torch.tensor(labels))
    if head_class is Cosface:
        expected = cosface_np(cos, labels, 64.0, 0.35, cross_entropy)
    else:
        expected = arcface_np(cos, labels, 64.0, 0.5, False, cross_entropy)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_cosface_at_plus_minus_one(cross_entropy, cosface_np):
    cos, labels = np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([0, 0])
    c = torch.tensor(cos, requires_grad=True)
    loss, _ = cosface_loss(c, torch.tensor(labels))
    loss.backward()
    assert loss.item() == pytest.approx(cosface_np(cos, labels, 64.0, 0.35, cross_entropy), rel=1e-10)
    assert torch.isfinite(c.grad).all()
