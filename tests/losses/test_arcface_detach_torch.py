"""ArcFace with detach_margin (insightface's December 2022 form) against NumPy and against insightface's code.

The value must be the ArcFace loss (conftest's arcface_np reference) and the gradient with respect to the cosines
that of the plain scaled-cosine softmax at those logits: dL/dcos_nj = s (p_nj - [j = y_n]) / B, with p the
softmax of the margin logits. insightface's no_grad form is re-typed below from recognition/arcface_torch/
losses.py (commit 657ae30e) as the autograd reference where the two forms agree (theta + m <= pi).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import losses
from losses.torch.arcface import Arcface, arcface_loss, arcface_target

# Target cosines on both sides of cos(pi - m) = -0.878 (m = 0.5) and of 0 (easy margin).
TARGETS = np.array([0.9, 0.5, -0.3, -0.95, 0.1, -0.6])


def case(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cos, labels = rng.uniform(-0.98, 0.98, (6, 5)), rng.integers(0, 5, 6)
    cos[np.arange(6), labels] = TARGETS
    return cos, labels


def softmax_grad_np(cos, labels, s, m, easy, arc_target_np):
    """s (softmax(s * margin cosines) - onehot) / B: the gradient of CE(s cos) with respect to cos, at the margin."""
    rows = np.arange(len(labels))
    logits = cos.copy()
    logits[rows, labels] = arc_target_np(cos[rows, labels], m, easy)
    z = s * logits - (s * logits).max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[rows, labels] -= 1.0
    return s * p / len(labels)


@pytest.mark.parametrize("easy", [False, True])
def test_value_is_arcface_and_gradient_is_the_plain_softmax(easy, arcface_np, arc_target_np, cross_entropy):
    cos, labels = case()
    c = torch.tensor(cos, requires_grad=True)
    loss, _ = arcface_loss(c, torch.tensor(labels), scale=64.0, margin=0.5, easy_margin=easy, detach_margin=True)
    loss.backward()
    assert loss.item() == pytest.approx(arcface_np(cos, labels, 64.0, 0.5, easy, cross_entropy), rel=1e-10)
    np.testing.assert_allclose(c.grad.numpy(), softmax_grad_np(cos, labels, 64.0, 0.5, easy, arc_target_np), atol=1e-10)


def test_target_slope_is_one_where_the_true_slope_vanishes():
    """d phi / d cos: 1 everywhere with detach_margin; the true slope is 0 at theta = pi - m (the stall point)."""
    c = torch.tensor([math.cos(math.pi - 0.5) + 1e-9, 0.3, -0.99, 0.999], dtype=torch.float64, requires_grad=True)
    arcface_target(c, margin=0.5, detach_margin=True).sum().backward()
    assert torch.equal(c.grad, torch.ones_like(c))
    true = torch.autograd.grad(arcface_target(c, margin=0.5).sum(), c)[0]
    assert abs(true[0].item()) < 1e-3


def insightface_logits(cos: torch.Tensor, labels: torch.Tensor, s: float, margin: float) -> torch.Tensor:
    """insightface ArcFace.forward after commit 657ae30e, re-typed (labels all >= 0)."""
    logits = cos.clone()  # its input is the output of a linear layer; clone so `cos` keeps its value
    index = torch.where(labels != -1)[0]
    target_logit = logits[index, labels[index].view(-1)]
    with torch.no_grad():
        target_logit.arccos_()
        logits.arccos_()
        final_target_logit = target_logit + margin
        logits[index, labels[index].view(-1)] = final_target_logit
        logits.cos_()
    return logits * s


def test_equals_insightface_no_grad_form_where_theta_plus_m_stays_below_pi():
    cos, labels = case(2)
    cos[np.arange(6), labels] = [0.9, 0.5, -0.3, -0.7, 0.1, -0.6]  # theta_y + 0.5 < pi for every row
    mine, theirs = (torch.tensor(cos, requires_grad=True) for _ in range(2))
    y = torch.tensor(labels)
    loss, _ = arcface_loss(mine, y, scale=64.0, margin=0.5, detach_margin=True)
    reference = F.cross_entropy(insightface_logits(theirs, y, 64.0, 0.5), y)
    loss.backward(), reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), atol=1e-10)


def test_insightface_no_grad_form_drops_the_branch_past_pi_minus_m(arc_target_np):
    """Documented difference: insightface's new form is cos(theta + m) for every theta (it turns back up past
    pi - m, and easy_margin is no longer read); ours keeps the branch value, so only the gradient changes."""
    c = torch.tensor([[-0.95, 0.0]], dtype=torch.float64)
    theirs = insightface_logits(c, torch.tensor([0]), 1.0, 0.5)[0, 0].item()
    assert theirs == pytest.approx(math.cos(math.acos(-0.95) + 0.5), rel=1e-12)
    ours = arcface_target(c[:, 0], margin=0.5, detach_margin=True).item()
    assert ours == pytest.approx(arc_target_np(np.array(-0.95), 0.5, False), rel=1e-12) and ours < theirs


def test_head_option_changes_the_gradient_only():
    torch.manual_seed(0)
    plain = losses.build("torch", "arcface", dim=8, classes=5, label_smoothing=0.1)
    detached = losses.build("torch", "arcface", dim=8, classes=5, label_smoothing=0.1, detach_margin=True)
    detached.load_state_dict(plain.state_dict())
    x = torch.randn(6, 8, dtype=torch.float64)
    y, keep = torch.tensor([0, 1, 2, 3, 4, 1]), torch.tensor([True] * 5 + [False])
    plain.double(), detached.double()
    a, _ = plain(x, y, keep)
    b, _ = detached(x, y, keep)
    a.backward(), b.backward()
    assert b.item() == pytest.approx(a.item(), rel=1e-12)
    assert not torch.allclose(plain.weight.grad, detached.weight.grad)
    assert isinstance(detached, Arcface) and detached.detach_margin
