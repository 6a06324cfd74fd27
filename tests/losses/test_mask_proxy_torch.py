"""Masked Proxy (MP / MMP) against a loop-by-loop NumPy reading of the authors' loss."""

import numpy as np
import pytest
import torch

from losses.torch.mask_proxy import MaskProxy, mask_proxy_loss, queries_and_centroids


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def case(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array([3, 1, 3, 4, 1, 3, 0, 1])  # classes 1, 3 have 3 samples, 0 and 4 one each
    return unit(rng.normal(size=(8, 5))), labels, unit(rng.normal(size=(6, 5)))


def test_queries_are_first_samples_and_centroids_the_mean_of_the_rest():
    x, labels, _ = case()
    queries, c = queries_and_centroids(torch.tensor(x), torch.tensor(labels))
    # One row per sample: the queries of classes 1 and 3 are samples 1 and 0, each row its own query.
    assert np.flatnonzero(queries.numpy()).tolist() == [0, 1] and sorted(labels[queries.numpy()].tolist()) == [1, 3]
    np.testing.assert_allclose(c.numpy()[[1, 0]], [(x[4] + x[7]) / 2, (x[2] + x[5]) / 2])


@pytest.mark.parametrize("multinomial", [False, True])
def test_loss_matches_reference_and_gradcheck(multinomial, mask_proxy_np):
    x, labels, proxies = case()
    queries, c = queries_and_centroids(torch.tensor(x), torch.tensor(labels))
    q, classes = torch.tensor(x), torch.tensor(labels)
    p = torch.tensor(proxies, requires_grad=True)
    w, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)
    loss, logits = mask_proxy_loss(q, c, classes, p, w, b, keep=queries, lamb=0.5, multinomial=multinomial)
    assert logits[queries].shape == (2, 6)
    assert loss.item() == pytest.approx(mask_proxy_np(x, labels, proxies, 10.0, -5.0, 0.5, multinomial), rel=1e-10)
    inputs = (q.clone().requires_grad_(), c.clone().requires_grad_(), p, w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda *a: mask_proxy_loss(a[0], a[1], classes, *a[2:], keep=queries, lamb=0.5, multinomial=multinomial)[0],
        inputs,
    )


@pytest.mark.parametrize("multinomial", [False, True])
def test_head_normalises_embeddings_and_proxies(multinomial, mask_proxy_np):
    x, labels, _ = case(1)
    head = MaskProxy(5, 6, multinomial=multinomial).double()
    proxies = unit(head.proxies.detach().numpy())
    loss, logits = head(torch.tensor(x) * 7.0, torch.tensor(labels))
    assert loss.item() == pytest.approx(mask_proxy_np(x, labels, proxies, 10.0, -5.0, 0.5, multinomial), rel=1e-9)
    np.testing.assert_allclose(logits.detach().numpy(), 10.0 * x @ proxies.T - 5.0, atol=1e-10)


def test_batch_without_repeated_class_gives_a_zero_that_backpropagates():
    head = MaskProxy(5, 6)
    x = torch.randn(3, 5, requires_grad=True)
    loss, _ = head(x, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and head.proxies.grad is not None and head.w.grad is not None


def test_every_class_in_batch_leaves_no_negative_proxies(mask_proxy_np):
    x, labels, proxies = case(2)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    queries, c = queries_and_centroids(torch.tensor(x), torch.tensor(labels))
    p = torch.tensor(proxies[:3], requires_grad=True)
    loss, _ = mask_proxy_loss(
        torch.tensor(x), c, torch.tensor(labels), p, 10.0, -5.0, keep=queries, lamb=0.5, multinomial=True
    )
    loss.backward()
    assert loss.item() == pytest.approx(mask_proxy_np(x, labels, proxies[:3], 10.0, -5.0, 0.5, True), rel=1e-10)
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("multinomial", [False, True])
@pytest.mark.parametrize("norm", [1e-30, 1e20])
def test_tiny_huge_features_and_a_single_class(multinomial, norm, mask_proxy_np):
    x, labels = case(3)[0], np.zeros(8, dtype=int)
    head = MaskProxy(5, 1, multinomial=multinomial).double()
    proxy = unit(head.proxies.detach().numpy())
    loss, _ = head(torch.tensor(x * norm), torch.tensor(labels))
    assert loss.item() == pytest.approx(
        mask_proxy_np(x, labels, proxy, 10.0, -5.0, 0.5, multinomial), rel=1e-9, abs=1e-12
    )
