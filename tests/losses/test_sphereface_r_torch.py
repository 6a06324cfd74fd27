"""SphereFace-R: margin values from the paper's three definitions, and detached (plain-cosine) gradients."""

import numpy as np
import pytest
import torch

from losses.torch.sphereface_r import SpherefaceR, sphereface_r_cosines, sphereface_r_loss


@pytest.mark.parametrize("version", ["v0", "v1", "v2"])
def test_margin_values_match_the_definitions_including_plus_minus_one(version, sphereface_r_cosines_np):
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, (6, 5))
    cos[0, :2], cos[1, :2] = [1.0, -1.0], [-1.0, 1.0]
    labels = np.array([0, 0, 1, 2, 3, 4])
    out = sphereface_r_cosines(torch.tensor(cos), torch.tensor(labels), version=version, margin=1.7)
    np.testing.assert_allclose(out.numpy(), sphereface_r_cosines_np(cos, labels, version, 1.7), atol=1e-12)


@pytest.mark.parametrize("normalization", ["none", "hard", "soft"])
@pytest.mark.parametrize("version", ["v0", "v1", "v2"])
def test_loss_value_and_detached_gradients(
    version, normalization, cross_entropy, sphereface_r_cosines_np, softmax_probs_np
):
    rng = np.random.default_rng(1)
    cos, norms, labels = rng.uniform(-1, 1, (5, 4)), rng.uniform(10, 50, (5, 1)), rng.integers(0, 4, 5)
    s, m, penalty = 30.0, 1.5, 0.01
    c, n = torch.tensor(cos, requires_grad=True), torch.tensor(norms, requires_grad=True)
    loss, _ = sphereface_r_loss(
        c, n, torch.tensor(labels), version=version, normalization=normalization, margin=m, scale=s, penalty=penalty
    )
    loss.backward()

    r = s if normalization == "hard" else norms
    adjusted = sphereface_r_cosines_np(cos, labels, version, m)
    expected = cross_entropy(r * adjusted, labels)
    if normalization == "soft":
        expected += penalty * np.abs(norms - s).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-10)

    # Gradient detachment: dL/dcos is what plain r cos would get, (p - onehot) r / B, with p the softmax_probs_np
    # of the margin logits; the margin itself contributes nothing.
    residual = softmax_probs_np(r * adjusted)
    residual[np.arange(5), labels] -= 1
    np.testing.assert_allclose(c.grad.numpy(), residual * r / 5, atol=1e-10)
    if normalization != "hard":
        g_norm = (residual * adjusted).sum(1, keepdims=True) / 5
        if normalization == "soft":
            g_norm += penalty * np.sign(norms - s) / 5
        np.testing.assert_allclose(n.grad.numpy(), g_norm, atol=1e-10)


def test_head_scores_and_validation():
    head = SpherefaceR(4, 3, normalization="none")
    x = torch.randn(2, 4) * 7
    w = torch.nn.functional.normalize(head.weight.detach(), dim=1)
    torch.testing.assert_close(head.scores(x), x @ w.T)
    with pytest.raises(ValueError):
        SpherefaceR(4, 3, version="v3")
    with pytest.raises(ValueError):
        SpherefaceR(4, 3, margin=0.5)


def test_defaults_are_the_opensphere_training_config():
    head = SpherefaceR(4, 3)
    assert (head.version, head.normalization, head.scale, head.margin) == ("v2", "hard", 60.0, 1.4)


@pytest.mark.parametrize("normalization", ["none", "hard"])
@pytest.mark.parametrize("norm", [0.0, 1e20])
def test_head_with_zero_and_huge_norm_features(normalization, norm, cross_entropy, sphereface_r_cosines_np):
    rng = np.random.default_rng(6)
    head = SpherefaceR(4, 3, normalization=normalization)
    x, labels = rng.normal(size=(5, 4)), np.array([0, 1, 2, 2, 0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = head.weight.detach().double().numpy()
    cos = x @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T * (norm > 0)  # zero feature: cos = 0
    loss, _ = head(torch.tensor(x * norm, dtype=torch.float32), torch.tensor(labels))
    r = 60.0 if normalization == "hard" else norm
    expected = cross_entropy(r * sphereface_r_cosines_np(cos, labels, "v2", 1.4), labels)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
