"""SphereFace2 against the paper's binary loss in NumPy; the initial bias against its balance condition."""

import numpy as np
import pytest
import torch

from losses.torch.sphereface2 import Sphereface2, sphereface2_bias, sphereface2_loss

CASES = [("C", 0.4), ("A", 0.5), ("M", 1.7)]


@pytest.mark.parametrize("kind,m", CASES)
def test_loss_and_detached_gradient_match_numpy(kind, m, logistic_np, sphereface2_logits_np, sphereface2_np):
    rng = np.random.default_rng(0)
    cos, labels, b = rng.uniform(-1, 1, (6, 5)), rng.integers(0, 5, 6), -3.0
    cos[0, :2], cos[1, :2] = [1.0, -1.0], [-1.0, 1.0]  # the ends of the range
    c = torch.tensor(cos, requires_grad=True)
    loss, logits = sphereface2_loss(c, torch.tensor(labels), b, margin_type=kind, lamb=0.7, scale=40.0, margin=m, t=3.0)
    loss.backward()
    assert loss.item() == pytest.approx(sphereface2_np(cos, labels, b, kind, 0.7, 40.0, m, 3.0), rel=1e-10)
    z = sphereface2_logits_np(cos, labels, b, kind, 40.0, m, 3.0)
    np.testing.assert_allclose(logits.detach().numpy(), z, atol=1e-9)
    # Margin and g are forward-only: dL/dcos = r * dL/dlogit = weight * (sigmoid(z) - onehot) / B.
    onehot = np.zeros_like(z)
    onehot[np.arange(6), labels] = 1
    weight = np.where(onehot == 1, 0.7, 0.3)
    np.testing.assert_allclose(c.grad.numpy(), weight * (logistic_np(z) - onehot) / 6, atol=1e-12)


@pytest.mark.parametrize("kind,m", CASES)
@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_initial_bias_balances_positive_and_negative_gradients(kind, m, classes, logistic_np, sphereface2_logits_np):
    r, t, lamb = 40.0, 3.0, 0.7
    b = sphereface2_bias(classes, margin_type=kind, lamb=lamb, scale=r, margin=m, t=t)
    # At initialisation every cos theta = 0 (theta = pi / 2): a row's logits are sphereface2_logits_np at cos = 0.
    z = sphereface2_logits_np(np.zeros((1, classes)), np.array([0]), b, kind, r, m, t)[0]
    positive_pull = lamb * (1 - logistic_np(z[0]))
    negative_push = (1 - lamb) * logistic_np(z[1:]).sum()
    assert positive_pull == pytest.approx(negative_push, rel=1e-6)


def test_bias_gradient_vanishes_at_initialisation():
    # With the embedding orthogonal to every centre, dL/db = 0 is the paper's balance condition.
    head = Sphereface2(2, 50)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, 1] = 1.0
    loss, _ = head(torch.tensor([[1.0, 0.0]]), torch.tensor([3]))
    loss.backward()
    assert abs(head.bias.grad.item()) < 1e-6


def test_bias_matches_the_opensphere_closed_form():
    # OpenSphere's published expression for SphereFace2-C, evaluated independently here.
    lamb, r, m, t, c = 0.7, 40.0, 0.4, 3.0, 1000
    z = lamb / ((1 - lamb) * (c - 1))
    ay, ai = r * (2 * 0.5**t - 1 - m), r * (2 * 0.5**t - 1 + m)
    expected = np.log(2 * z) - ai - np.log(1 - z + np.sqrt((1 - z) ** 2 + 4 * z * np.exp(ay - ai)))
    assert sphereface2_bias(c, margin_type="C", lamb=lamb, scale=r, margin=m, t=t) == pytest.approx(expected, rel=1e-12)


def test_single_class_loss_and_head_validation(sphereface2_np):
    cos = np.array([[0.3], [-0.2]])
    loss, _ = sphereface2_loss(torch.tensor(cos), torch.tensor([0, 0]), 1.0)
    assert loss.item() == pytest.approx(sphereface2_np(cos, np.array([0, 0]), 1.0, "C", 0.7, 40.0, 0.4, 3.0), rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        Sphereface2(4, 1)
    with pytest.raises(ValueError, match="class_weights"):
        Sphereface2(4, 3, class_weights=torch.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        Sphereface2(4, 3, label_smoothing=0.1)


@pytest.mark.parametrize("norm", [0.0, 1e20])
def test_head_with_zero_and_huge_norm_features(norm, sphereface2_np):
    rng = np.random.default_rng(5)
    head = Sphereface2(4, 3)
    x, labels = rng.normal(size=(5, 4)), np.array([0, 1, 2, 2, 0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = head.weight.detach().double().numpy()
    cos = x @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T * (norm > 0)  # zero feature: cos = 0
    loss, _ = head(torch.tensor(x * norm, dtype=torch.float32), torch.tensor(labels))
    expected = sphereface2_np(cos, labels, head.bias.item(), "C", 0.7, 40.0, 0.4, 3.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
