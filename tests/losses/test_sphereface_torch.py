"""A-Softmax against psi_np(theta) = (-1)^k cos(m theta) - 2k computed from theta = arccos(cos) in NumPy."""

import numpy as np
import pytest
import torch

from losses.torch.sphereface import Sphereface, sphereface_loss, sphereface_psi


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_matches_the_definition_including_the_ends_and_interval_boundaries(m, psi_np):
    bounds = np.cos(np.arange(m + 1) * np.pi / m)
    c = np.concatenate([np.linspace(-1, 1, 201), bounds, [1.0, -1.0]])
    np.testing.assert_allclose(sphereface_psi(torch.tensor(c), m).numpy(), psi_np(c, m), atol=1e-9)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_psi_is_monotonically_decreasing_in_theta_and_ends_at_1_minus_2m(m):
    theta = np.linspace(0, np.pi, 2001)
    values = sphereface_psi(torch.tensor(np.cos(theta)), m).numpy()
    assert np.all(np.diff(values) < 1e-12)
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(1 - 2 * m)


@pytest.mark.parametrize("m", [2, 4])
def test_psi_gradient_is_the_analytic_derivative(m):
    # d psi_np / d cos = (-1)^k m sin(m theta) / sin(theta), finite everywhere inside (-1, 1).
    c = np.linspace(-0.99, 0.99, 37)
    theta = np.arccos(c)
    k = np.floor(m * theta / np.pi)
    expected = (-1.0) ** k * m * np.sin(m * theta) / np.sin(theta)
    x = torch.tensor(c, requires_grad=True)
    sphereface_psi(x, m).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("lamb", [0.0, 5.0])
def test_loss_and_gradients_match_numpy(lamb, cross_entropy, numeric_grad, sphereface_np):
    rng = np.random.default_rng(1)
    cos, norms, labels = rng.uniform(-0.95, 0.95, (5, 4)), rng.uniform(0.5, 3, (5, 1)), rng.integers(0, 4, 5)
    c, n = torch.tensor(cos, requires_grad=True), torch.tensor(norms, requires_grad=True)
    loss, _ = sphereface_loss(c, torch.tensor(labels), scale=n, margin=4, lamb=lamb)
    loss.backward()
    assert loss.item() == pytest.approx(sphereface_np(cos, norms, labels, 4, lamb, cross_entropy), rel=1e-10)
    g_cos = numeric_grad(lambda a: sphereface_np(a, norms, labels, 4, lamb, cross_entropy), cos)
    g_norm = numeric_grad(lambda a: sphereface_np(cos, a, labels, 4, lamb, cross_entropy), norms)
    np.testing.assert_allclose(c.grad.numpy(), g_cos, atol=1e-6)
    np.testing.assert_allclose(n.grad.numpy(), g_norm, atol=1e-6)


def test_cosines_at_plus_minus_one_are_exact_and_finite(cross_entropy, sphereface_np):
    cos = np.array([[1.0, -1.0, 0.3], [-1.0, 1.0, -1.0]])
    labels = np.array([0, 0])
    c = torch.tensor(cos, requires_grad=True)
    loss, _ = sphereface_loss(c, torch.tensor(labels), scale=30.0, margin=4)
    loss.backward()
    assert loss.item() == pytest.approx(sphereface_np(cos, 30.0, labels, 4, 0.0, cross_entropy), rel=1e-10)
    assert torch.isfinite(c.grad).all()


def test_m1_without_annealing_is_plain_softmax_on_norm_times_cos(cross_entropy):
    rng = np.random.default_rng(2)
    cos, labels = rng.uniform(-1, 1, (4, 3)), rng.integers(0, 3, 4)
    loss, _ = sphereface_loss(torch.tensor(cos), torch.tensor(labels), scale=2.0, margin=1)
    assert loss.item() == pytest.approx(cross_entropy(2.0 * cos, labels), rel=1e-10)


def test_annealing_follows_the_caffe_schedule_and_is_checkpointed():
    head = Sphereface(4, 3)
    x, y = torch.randn(2, 4), torch.tensor([0, 1])
    for step in range(1, 4):
        head(x, y)
        assert head.lamb().item() == pytest.approx(max(5.0, 1000.0 / (1 + 0.12 * step)))
    head.eval()
    head(x, y)  # evaluation does not advance the schedule
    assert int(head.state_dict()["step"]) == 3
    head.step.fill_(10_000)
    assert head.lamb().item() == 5.0


def test_head_gradcheck_in_float64():
    torch.manual_seed(0)
    head = Sphereface(4, 3, lambda_base=0.0, lambda_min=2.0).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: head(e, torch.tensor([0, 1, 2]))[0], (x,))


def test_normalised_variant_uses_scale_and_rejects_fractional_margin():
    head = Sphereface(4, 3, scale=30.0)
    x = torch.randn(2, 4)
    w = head.weight.detach()
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    torch.testing.assert_close(head.scores(x), 30.0 * cos)
    with pytest.raises(ValueError, match="positive integer"):
        Sphereface(4, 3, margin=1.5)


@pytest.mark.parametrize("norm", [0.0, 1e20])
def test_original_head_with_zero_and_huge_norm_features(norm, cross_entropy, sphereface_np):
    # r = ||x||: a zero feature gives all-zero logits (loss log C); a huge one scales the logits.
    rng = np.random.default_rng(4)
    head = Sphereface(4, 3, lambda_base=0.0, lambda_min=0.0)
    x, labels = rng.normal(size=(5, 4)), np.array([0, 1, 2, 2, 0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = head.weight.detach().double().numpy()
    cos = x @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    loss, _ = head(torch.tensor(x * norm, dtype=torch.float32), torch.tensor(labels))
    expected = sphereface_np(cos, norm, labels, 4, 0.0, cross_entropy)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
