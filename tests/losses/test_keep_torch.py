"""Per-sample keep masks: a masked batch gives the loss and gradients of its kept subset, whatever the dropped
samples' labels are (-1 included); a batch with nothing kept gives 0 with zero, finite gradients."""

import math

import pytest
import torch

import losses
from losses.torch.contrastive import contrastive_loss
from losses.torch.cross_modal import info_nce_loss, sigmoid_loss
from losses.torch.triplet import triplet_loss
from research.assembly import head_kwargs
from research.config import CLASS_HEADS, Config
from research.config_parse import apply_overrides

HEADS = CLASS_HEADS  # heads with class centres; the pair losses have tests of their own
# Class 0 keeps one sample (no mask_proxy query), class 2 loses its first sample (its query moves to sample 6).
KEEP = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
LABELS = torch.arange(12) % 4


def build(name: str, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = apply_overrides(Config(), [f"--loss={name}", "--model.dim=8", "--model.heads=1"])
    head = losses.build("torch", name, class_weights=class_weights, **head_kwargs(cfg, 4))
    return head.double().eval()  # eval: sphereface's annealing step stays put between the two calls


def masked_and_subset(fn, x: torch.Tensor, params: list[torch.Tensor]):
    """fn(x, labels, keep) on the masked batch and fn(x[keep], labels[keep], None) -> both (loss, grads)."""
    results = []
    for rows, labels, keep in [(slice(None), torch.where(KEEP, LABELS, -1), KEEP), (KEEP, LABELS[KEEP], None)]:
        xr = x[rows].clone().requires_grad_(True)
        loss = fn(xr, labels, keep)
        grads = torch.autograd.grad(loss, [xr, *params], allow_unused=True)
        results.append((loss, grads))
    return results


def assert_subset_equal(masked, subset):
    (loss, grads), (ref, ref_grads) = masked, subset
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][KEEP], ref_grads[0], rtol=1e-10, atol=1e-12)
    assert torch.equal(grads[0][~KEEP], torch.zeros_like(grads[0][~KEEP]))
    for g, r in zip(grads[1:], ref_grads[1:], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", HEADS)
def test_head_on_a_masked_batch_equals_the_head_on_the_kept_samples(name):
    head = build(name)
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    masked, subset = masked_and_subset(lambda e, y, k: head(e, y, k)[0], x, list(head.parameters()))
    assert_subset_equal(masked, subset)


@pytest.mark.parametrize("name", ["softmax", "arcface"])
def test_class_weighted_masked_mean(name):
    head = build(name, class_weights=torch.tensor([0.5, 2.0, 1.0, 3.0]))
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    masked, subset = masked_and_subset(lambda e, y, k: head(e, y, k)[0], x, list(head.parameters()))
    assert_subset_equal(masked, subset)


@pytest.mark.parametrize("name", HEADS)
def test_nothing_kept_gives_zero_with_zero_finite_gradients(name):
    head = build(name).train()
    x = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    loss, logits = head(x, torch.full((6,), -1), torch.zeros(6, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and logits.shape == (6, 4) and torch.isfinite(logits).all()
    assert torch.equal(x.grad, torch.zeros_like(x))
    for p in head.parameters():  # every parameter stays in the graph (DDP), with a zero gradient
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p))
    if name == "sphereface":
        assert head.step.item() == 0  # the annealing schedule advances only when the head sees a sample


def pair_losses():
    yield "triplet_batch_hard", lambda e, y, k: triplet_loss(e, y, keep=k, margin=0.3)[0]
    yield "triplet_semi_hard", lambda e, y, k: triplet_loss(e, y, keep=k, margin=0.3, mining="semi_hard")[0]
    # Pairs (first half, second half) for the two-input losses: sample i of e[:6] against sample i of e[6:].
    yield "contrastive", lambda e, y, k: contrastive_loss(e[:, :4], e[:, 4:], y % 2 == 0, keep=k, margin=1.2)[0]
    yield "infonce", lambda e, y, k: info_nce_loss(e[:, :4], e[:, 4:], math.log(5.0), keep=k)[0]
    yield "infonce_labels", lambda e, y, k: info_nce_loss(e[:, :4], e[:, 4:], math.log(5.0), y, keep=k)[0]
    yield "sigmoid", lambda e, y, k: sigmoid_loss(e[:, :4], e[:, 4:], math.log(5.0), -2.0, keep=k)[0]
    yield "sigmoid_labels", lambda e, y, k: sigmoid_loss(e[:, :4], e[:, 4:], math.log(5.0), -2.0, y, keep=k)[0]


PAIR_LOSSES = dict(pair_losses())


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_pair_loss_on_a_masked_batch_equals_the_loss_on_the_kept_samples(name):
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    masked, subset = masked_and_subset(PAIR_LOSSES[name], x, [])
    assert_subset_equal(masked, subset)


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_pair_loss_with_nothing_kept_is_zero_with_zero_gradients(name):
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    loss = PAIR_LOSSES[name](x, torch.full((5,), -1), torch.zeros(5, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
