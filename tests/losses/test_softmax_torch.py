"""Softmax head against torch's documented cross-entropy formula written in NumPy."""

import numpy as np
import pytest
import torch

from losses.torch.softmax import Softmax, softmax_loss


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_gradient_match_numpy(smoothing, weighted, log_softmax, numeric_grad, softmax_np):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 4)) * 3, rng.integers(0, 4, 6)
    weights = rng.uniform(0.2, 2.0, 4) if weighted else None
    z = torch.tensor(logits, requires_grad=True)
    w = None if weights is None else torch.tensor(weights)
    loss, out = softmax_loss(z, torch.tensor(labels), label_smoothing=smoothing, class_weights=w)
    loss.backward()
    expected = softmax_np(logits, labels, smoothing, weights, log_softmax)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    grad = numeric_grad(lambda a: softmax_np(a, labels, smoothing, weights, log_softmax), logits)
    np.testing.assert_allclose(z.grad.numpy(), grad, atol=1e-7)
    assert out is z


def test_hand_worked_two_classes():
    # logits (0, ln 3): p = (1/4, 3/4); label 0 -> -log(1/4) = log 4.
    loss, _ = softmax_loss(torch.tensor([[0.0, np.log(3.0)]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(np.log(4.0), rel=1e-6)


def test_head_scores_are_the_linear_logits_and_loss_uses_them(log_softmax, softmax_np):
    torch.manual_seed(0)
    head = Softmax(5, 3, label_smoothing=0.1, class_weights=torch.tensor([1.0, 2.0, 0.5]))
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 1])
    w, b = head.linear.weight.detach().numpy(), head.linear.bias.detach().numpy()
    scores = x.numpy() @ w.T + b
    np.testing.assert_allclose(head.scores(x).detach().numpy(), scores, rtol=1e-5, atol=1e-6)
    loss, logits = head(x, y)
    expected = softmax_np(scores.astype(np.float64), y.numpy(), 0.1, np.array([1.0, 2.0, 0.5]), log_softmax)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert "class_weights" not in head.state_dict()  # recomputed from the split, not checkpointed


def test_single_class_and_single_sample_give_zero_loss():
    head = Softmax(3, 1)
    loss, logits = head(torch.randn(1, 3), torch.tensor([0]))
    assert logits.shape == (1, 1) and loss.item() == 0.0


def test_low_precision_input_is_computed_in_float32():
    head = Softmax(4, 3)
    x = torch.randn(5, 4).bfloat16()
    loss, logits = head(x, torch.tensor([0, 1, 2, 0, 1]))
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
