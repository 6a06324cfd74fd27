"""Contrastive and triplet losses against brute-force NumPy loops and hand-worked examples."""

import numpy as np
import pytest
import torch

from losses.torch.contrastive import Contrastive, contrastive_loss
from losses.torch.triplet import Triplet, triplet_loss


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_contrastive_matches_numpy_and_gradcheck(numeric_grad, contrastive_np):
    rng = np.random.default_rng(0)
    a, b, same = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), np.array([1, 0, 1, 0, 0, 1], bool)
    loss, d = contrastive_loss(torch.tensor(a), torch.tensor(b), torch.tensor(same), margin=1.5)
    assert loss.item() == pytest.approx(contrastive_np(a, b, same, 1.5), rel=1e-10)
    np.testing.assert_allclose(d.numpy(), np.linalg.norm(unit(a) - unit(b), axis=1))
    ta = torch.tensor(a, requires_grad=True)
    contrastive_loss(ta, torch.tensor(b), torch.tensor(same), margin=1.5)[0].backward()
    np.testing.assert_allclose(ta.grad.numpy(), numeric_grad(lambda x: contrastive_np(x, b, same, 1.5), a), atol=1e-7)
    assert torch.autograd.gradcheck(
        lambda x, y: Contrastive(margin=1.5)(x, y, torch.tensor(same))[0],
        (ta.detach().requires_grad_(), torch.tensor(b, requires_grad=True)),
    )


def test_contrastive_hand_worked_and_identical_pair():
    # Unit vectors (1, 0) and (0, 1): d = sqrt 2. Same: d^2 / 2 = 1. Different, m = 2: (2 - sqrt 2)^2 / 2.
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert contrastive_loss(a, b, torch.tensor([True]), margin=2.0)[0].item() == pytest.approx(1.0)
    assert contrastive_loss(a, b, torch.tensor([False]), margin=2.0)[0].item() == pytest.approx((2 - 2**0.5) ** 2 / 2)
    x = torch.tensor([[0.6, 0.8]], requires_grad=True)
    loss, _ = contrastive_loss(x, x.detach().clone(), torch.tensor([False]), margin=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.5) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_triplet_matches_brute_force(mining, squared, numeric_grad, pair_distances_np, batch_hard_np, semi_hard_np):
    rng = np.random.default_rng(1)
    x, labels = unit(rng.normal(size=(9, 3))), np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    reference = batch_hard_np if mining == "batch_hard" else semi_hard_np
    t = torch.tensor(x, requires_grad=True)
    loss, d = triplet_loss(t, torch.tensor(labels), margin=0.3, mining=mining, squared=squared)
    loss.backward()
    assert loss.item() == pytest.approx(reference(x, labels, 0.3, squared), rel=1e-9)
    np.testing.assert_allclose(d.detach().numpy(), pair_distances_np(x, squared), atol=1e-7)
    grad = numeric_grad(lambda v: reference(unit(v), labels, 0.3, squared), x)
    np.testing.assert_allclose(t.grad.numpy(), grad, atol=1e-6)


def test_triplet_hand_worked_one_dimensional():
    # Points on a line, no normalisation: a = 0, p = 1 (same class), n at 1.5 and 3 (class 1).
    x, labels = torch.tensor([[0.0], [1.0], [1.5], [3.0]]), torch.tensor([0, 0, 1, 1])
    # Batch hard, margin 1: anchors 0: 1 - 1.5 + 1 = 0.5; 1: 1 - 0.5 + 1 = 1.5; 2: 1.5 - 0.5 + 1 = 2;
    # 3: 1.5 - 2 + 1 = 0.5 -> mean 1.125.
    assert triplet_loss(x, labels, margin=1.0, normalize=False)[0].item() == pytest.approx(1.125)
    # Semi-hard: pair (0, 1), d_ap = 1: the nearest negative beyond 1 is 1.5 -> 0.5. Pair (1, 0): all
    # negatives of 1 (0.5, 2) -> beyond 1 is 2 -> 0. Pair (2, 3), d_ap = 1.5: beyond: 1.5? no (strict), 3? no ->
    # the farthest negative 1.5 (from 0) -> 1.5 - 1.5 + 1 = 1. Pair (3, 2): negatives 3, 2: beyond 1.5 -> 2 -> 0.5.
    assert triplet_loss(x, labels, margin=1.0, mining="semi_hard", normalize=False)[0].item() == pytest.approx(2.0 / 4)


def test_triplet_without_valid_triplets_is_a_zero_in_the_graph():
    x = torch.randn(3, 4, requires_grad=True)
    loss, _ = Triplet()(x, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_triplet_gradcheck_and_duplicate_points_stay_finite():
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda e: triplet_loss(e, labels, margin=0.5, mining="batch_hard")[0], (x,))
    assert torch.autograd.gradcheck(lambda e: triplet_loss(e, labels, margin=0.5, mining="semi_hard")[0], (x,))
    dup = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss, _ = triplet_loss(dup, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(dup.grad).all()
