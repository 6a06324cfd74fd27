"""The jax loss functions against the NumPy references of the torch tests (conftest.py), in float64.

Every test here runs with jax's x64 enabled (module fixture), so values and gradients are compared with the
torch tests' float64 tolerances; jax.grad is checked against central differences of the reference, or, where
a paper prescribes gradient detachment, against the gradient of the plain-cosine logits.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses.jax.arcface import arcface_loss, arcface_target
from losses.jax.contrastive import contrastive_loss
from losses.jax.cosface import cosface_loss
from losses.jax.cross_modal import info_nce_loss, sigmoid_loss
from losses.jax.mask_proxy import mask_proxy_loss, queries_and_centroids
from losses.jax.softmax import softmax_loss
from losses.jax.sphereface import sphereface_loss, sphereface_psi
from losses.jax.sphereface2 import sphereface2_bias, sphereface2_loss
from losses.jax.sphereface_r import sphereface_r_cosines, sphereface_r_loss
from losses.jax.triplet import triplet_loss


@pytest.fixture(autouse=True, scope="module")
def x64():
    with jax.enable_x64(True):
        yield


def value_and_grad(f, *args, argnums=0):
    """(float value, NumPy gradient(s)) of a scalar jax function of float64 arrays.

    Jitted: one compilation of the whole function costs less CPU than eager jax's compilation of every
    primitive (measured ~7x less for these small losses).
    """
    value, grad = jax.jit(jax.value_and_grad(f, argnums=argnums))(*(jnp.asarray(a) for a in args))
    return float(value), jax.tree.map(np.asarray, grad)


def random_case(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.98, 0.98, (6, 5)), rng.integers(0, 5, 6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax(smoothing, weighted, softmax_np, log_softmax, numeric_grad):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 4)) * 3, rng.integers(0, 4, 6)
    weights = rng.uniform(0.2, 2.0, 4) if weighted else None
    w = None if weights is None else jnp.asarray(weights)
    loss, grad = value_and_grad(
        lambda z: softmax_loss(z, labels, label_smoothing=smoothing, class_weights=w)[0], logits
    )
    expected = softmax_np(logits, labels, smoothing, weights, log_softmax)
    assert loss == pytest.approx(expected, rel=1e-10)
    reference = numeric_grad(lambda a: softmax_np(a, labels, smoothing, weights, log_softmax), logits)
    np.testing.assert_allclose(grad, reference, atol=1e-7)
    assert softmax_loss(jnp.array([[0.0, math.log(3.0)]]), jnp.array([0]))[0] == pytest.approx(math.log(4.0))


def test_cosface_including_plus_minus_one(cosface_np, cross_entropy, numeric_grad):
    cos, labels = random_case(0)
    loss, grad = value_and_grad(lambda c: cosface_loss(c, labels, scale=64.0, margin=0.35)[0], cos)
    assert loss == pytest.approx(cosface_np(cos, labels, 64.0, 0.35, cross_entropy), rel=1e-10)
    reference = numeric_grad(lambda a: cosface_np(a, labels, 64.0, 0.35, cross_entropy), cos)
    np.testing.assert_allclose(grad, reference, atol=1e-6)
    ends, labels = np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([0, 0])
    loss, grad = value_and_grad(lambda c: cosface_loss(c, labels)[0], ends)
    assert loss == pytest.approx(cosface_np(ends, labels, 64.0, 0.35, cross_entropy), rel=1e-10)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("easy", [False, True])
def test_arcface(easy, arcface_np, arc_target_np, cross_entropy, numeric_grad):
    cos, labels = random_case(1)
    cos[np.arange(6), labels] = np.array([0.9, 0.5, -0.3, -0.95, 0.1, -0.6])  # off the branch points
    loss, grad = value_and_grad(lambda c: arcface_loss(c, labels, scale=64.0, margin=0.5, easy_margin=easy)[0], cos)
    assert loss == pytest.approx(arcface_np(cos, labels, 64.0, 0.5, easy, cross_entropy), rel=1e-10)
    reference = numeric_grad(lambda a: arcface_np(a, labels, 64.0, 0.5, easy, cross_entropy), cos)
    np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-6)
    # The whole range, with the theta + m > pi branch and cos exactly +-1: values and finite gradients.
    c = np.cos(np.linspace(0, np.pi, 1001))
    c[0], c[-1] = 1.0, -1.0
    phi = np.asarray(arcface_target(jnp.asarray(c), margin=0.5, easy_margin=easy))
    np.testing.assert_allclose(phi, arc_target_np(c, 0.5, easy), atol=1e-6)
    slope = jax.grad(lambda x: arcface_target(x, margin=0.5, easy_margin=easy).sum())(jnp.asarray(c))
    assert np.isfinite(np.asarray(slope)).all()
    if not easy:  # never increasing in theta
        assert np.all(np.diff(phi) <= 1e-12)
    ends = np.asarray(arcface_target(jnp.array([1.0, -1.0, 0.0]), margin=0.5, easy_margin=easy))
    expected = [np.cos(0.5), -1.0, 0.0] if easy else [np.cos(0.5), -1 - 0.5 * np.sin(0.5), -np.sin(0.5)]
    np.testing.assert_allclose(ends, expected, atol=1e-6)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_sphereface_psi_values_monotonicity_and_slope(m, psi_np):
    bounds = np.cos(np.arange(m + 1) * np.pi / m)
    c = np.concatenate([np.linspace(-1, 1, 201), bounds, [1.0, -1.0]])
    np.testing.assert_allclose(np.asarray(sphereface_psi(jnp.asarray(c), m)), psi_np(c, m), atol=1e-9)
    values = np.asarray(sphereface_psi(jnp.cos(jnp.linspace(0, np.pi, 2001)), m))
    assert np.all(np.diff(values) < 1e-12) and values[-1] == pytest.approx(1 - 2 * m)
    inner = np.linspace(-0.99, 0.99, 37)
    theta = np.arccos(inner)
    k = np.floor(m * theta / np.pi)
    slope = jax.grad(lambda x: sphereface_psi(x, m).sum())(jnp.asarray(inner))
    np.testing.assert_allclose(np.asarray(slope), (-1.0) ** k * m * np.sin(m * theta) / np.sin(theta), atol=1e-9)


@pytest.mark.parametrize("lamb", [0.0, 5.0])
def test_sphereface_loss_and_gradients(lamb, sphereface_np, cross_entropy, numeric_grad):
    rng = np.random.default_rng(1)
    cos, norms, labels = rng.uniform(-0.95, 0.95, (5, 4)), rng.uniform(0.5, 3, (5, 1)), rng.integers(0, 4, 5)
    loss, (g_cos, g_norm) = value_and_grad(
        lambda c, n: sphereface_loss(c, labels, scale=n, margin=4, lamb=lamb)[0], cos, norms, argnums=(0, 1)
    )
    assert loss == pytest.approx(sphereface_np(cos, norms, labels, 4, lamb, cross_entropy), rel=1e-10)
    np.testing.assert_allclose(
        g_cos, numeric_grad(lambda a: sphereface_np(a, norms, labels, 4, lamb, cross_entropy), cos), atol=1e-6
    )
    np.testing.assert_allclose(
        g_norm, numeric_grad(lambda a: sphereface_np(cos, a, labels, 4, lamb, cross_entropy), norms), atol=1e-6
    )
    ends, labels = np.array([[1.0, -1.0, 0.3], [-1.0, 1.0, -1.0]]), np.array([0, 0])
    loss, grad = value_and_grad(lambda c: sphereface_loss(c, labels, scale=30.0, margin=4)[0], ends)
    assert loss == pytest.approx(sphereface_np(ends, 30.0, labels, 4, 0.0, cross_entropy), rel=1e-10)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("version", ["v0", "v1", "v2"])
def test_sphereface_r_margin_values_including_plus_minus_one(version, sphereface_r_cosines_np):
    cos = np.random.default_rng(0).uniform(-1, 1, (6, 5))
    cos[0, :2], cos[1, :2] = [1.0, -1.0], [-1.0, 1.0]
    labels = np.array([0, 0, 1, 2, 3, 4])
    out = sphereface_r_cosines(jnp.asarray(cos), jnp.asarray(labels), version=version, margin=1.7)
    np.testing.assert_allclose(np.asarray(out), sphereface_r_cosines_np(cos, labels, version, 1.7), atol=1e-12)


@pytest.mark.parametrize("normalization", ["none", "hard", "soft"])
@pytest.mark.parametrize("version", ["v0", "v1", "v2"])
def test_sphereface_r_loss_and_detached_gradients(
    version, normalization, sphereface_r_cosines_np, softmax_probs_np, cross_entropy
):
    rng = np.random.default_rng(1)
    cos, norms, labels = rng.uniform(-1, 1, (5, 4)), rng.uniform(10, 50, (5, 1)), rng.integers(0, 4, 5)
    cos[0, labels[0]], cos[1, labels[1]] = 1.0, -1.0  # acos has an infinite slope here: detached, so finite
    s, m, penalty = 30.0, 1.5, 0.01
    loss, (g_cos, g_norm) = value_and_grad(
        lambda c, n: sphereface_r_loss(
            c, n, labels, version=version, normalization=normalization, margin=m, scale=s, penalty=penalty
        )[0],
        cos,
        norms,
        argnums=(0, 1),
    )
    r = s if normalization == "hard" else norms
    adjusted = sphereface_r_cosines_np(cos, labels, version, m)
    expected = cross_entropy(r * adjusted, labels) + (
        penalty * np.abs(norms - s).mean() if normalization == "soft" else 0
    )
    assert loss == pytest.approx(expected, rel=1e-10)
    # Detachment: dL/dcos is the gradient plain r cos would get at the margin logits, (p - onehot) r / B.
    residual = softmax_probs_np(r * adjusted)
    residual[np.arange(5), labels] -= 1
    np.testing.assert_allclose(g_cos, residual * r / 5, atol=1e-10)
    if normalization != "hard":
        expected_norm = (residual * adjusted).sum(1, keepdims=True) / 5
        expected_norm += penalty * np.sign(norms - s) / 5 if normalization == "soft" else 0
        np.testing.assert_allclose(g_norm, expected_norm, atol=1e-10)


@pytest.mark.parametrize("kind,m", [("C", 0.4), ("A", 0.5), ("M", 1.7)])
def test_sphereface2_loss_detached_gradient_and_bias(kind, m, sphereface2_np, sphereface2_logits_np, logistic_np):
    rng = np.random.default_rng(0)
    cos, labels, b = rng.uniform(-1, 1, (6, 5)), rng.integers(0, 5, 6), -3.0
    cos[0, :2], cos[1, :2] = [1.0, -1.0], [-1.0, 1.0]
    (loss, logits), grad = jax.jit(
        jax.value_and_grad(
            lambda c: sphereface2_loss(c, labels, b, margin_type=kind, lamb=0.7, scale=40.0, margin=m, t=3.0),
            has_aux=True,
        )
    )(jnp.asarray(cos))
    assert float(loss) == pytest.approx(sphereface2_np(cos, labels, b, kind, 0.7, 40.0, m, 3.0), rel=1e-10)
    z = sphereface2_logits_np(cos, labels, b, kind, 40.0, m, 3.0)
    np.testing.assert_allclose(np.asarray(logits), z, atol=1e-9)
    onehot = np.eye(5)[labels]
    weight = np.where(onehot == 1, 0.7, 0.3)
    np.testing.assert_allclose(np.asarray(grad), weight * (logistic_np(z) - onehot) / 6, atol=1e-12)
    for classes in (2, 10, 1000):  # the initial bias balances the pull of the target and the push of the rest
        bias = sphereface2_bias(classes, margin_type=kind, lamb=0.7, scale=40.0, margin=m, t=3.0)
        z0 = sphereface2_logits_np(np.zeros((1, classes)), np.array([0]), bias, kind, 40.0, m, 3.0)[0]
        assert 0.7 * (1 - logistic_np(z0[0])) == pytest.approx(0.3 * logistic_np(z0[1:]).sum(), rel=1e-6)
    one_class = np.array([[0.3], [-0.2]])
    loss, _ = sphereface2_loss(jnp.asarray(one_class), jnp.array([0, 0]), 1.0)
    assert float(loss) == pytest.approx(
        sphereface2_np(one_class, np.array([0, 0]), 1.0, "C", 0.7, 40.0, 0.4, 3.0), rel=1e-10
    )


def test_contrastive(contrastive_np, numeric_grad):
    rng = np.random.default_rng(0)
    a, b, same = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), np.array([1, 0, 1, 0, 0, 1], bool)
    loss, grad = value_and_grad(lambda x: contrastive_loss(x, b, same, margin=1.5)[0], a)
    assert loss == pytest.approx(contrastive_np(a, b, same, 1.5), rel=1e-10)
    np.testing.assert_allclose(grad, numeric_grad(lambda x: contrastive_np(x, b, same, 1.5), a), atol=1e-7)
    e1, e2 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
    assert float(contrastive_loss(e1, e2, jnp.array([False]), margin=2.0)[0]) == pytest.approx((2 - 2**0.5) ** 2 / 2)
    x = np.array([[0.6, 0.8]])  # an identical pair: distance 0, where the norm's slope is infinite
    loss, grad = value_and_grad(lambda v: contrastive_loss(v, jnp.asarray(x), jnp.array([False]), margin=1.0)[0], x)
    assert loss == pytest.approx(0.5) and np.isfinite(grad).all()


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_triplet(mining, squared, batch_hard_np, semi_hard_np, pair_distances_np, numeric_grad, unit):
    rng = np.random.default_rng(1)
    x, labels = unit(rng.normal(size=(9, 3))), np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    reference = batch_hard_np if mining == "batch_hard" else semi_hard_np
    (loss, d), grad = jax.jit(
        jax.value_and_grad(lambda v: triplet_loss(v, labels, margin=0.3, mining=mining, squared=squared), has_aux=True)
    )(jnp.asarray(x))
    assert float(loss) == pytest.approx(reference(x, labels, 0.3, squared), rel=1e-9)
    np.testing.assert_allclose(np.asarray(d), pair_distances_np(x, squared), atol=1e-7)
    expected = numeric_grad(lambda v: reference(unit(v), labels, 0.3, squared), x)
    np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-6)


def test_triplet_hand_worked_no_valid_triplet_and_duplicates():
    x, labels = np.array([[0.0], [1.0], [1.5], [3.0]]), np.array([0, 0, 1, 1])
    assert value_and_grad(lambda v: triplet_loss(v, labels, margin=1.0, normalize=False)[0], x)[0] == pytest.approx(
        1.125
    )
    semi, _ = value_and_grad(lambda v: triplet_loss(v, labels, margin=1.0, mining="semi_hard", normalize=False)[0], x)
    assert semi == pytest.approx(0.5)
    loss, grad = value_and_grad(lambda v: triplet_loss(v, jnp.array([0, 1, 2]))[0], np.ones((3, 4)))
    assert loss == 0.0 and not grad.any()
    loss, grad = value_and_grad(
        lambda v: triplet_loss(v, jnp.array([0, 0, 1]))[0], np.array([[1.0, 0], [1, 0], [0, 1]])
    )
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("with_labels", [False, True])
def test_info_nce_and_sigmoid(with_labels, info_nce_np, sigmoid_np, numeric_grad):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    labels = np.array([0, 1, 0, 2, 1]) if with_labels else None
    loss, (g_a, g_t) = value_and_grad(lambda x, t: info_nce_loss(x, b, t, labels)[0], a, math.log(7.0), argnums=(0, 1))
    assert loss == pytest.approx(info_nce_np(a, b, 7.0, labels), rel=1e-10)
    np.testing.assert_allclose(g_a, numeric_grad(lambda x: info_nce_np(x, b, 7.0, labels), a), atol=1e-7)
    assert g_t == pytest.approx(
        numeric_grad(lambda t: info_nce_np(a, b, np.exp(t[0]), labels), [math.log(7.0)])[0], abs=1e-7
    )
    loss, (g_a, g_t, g_b) = value_and_grad(
        lambda x, t, c: sigmoid_loss(x, b, t, c, labels)[0], a, math.log(10.0), -3.0, argnums=(0, 1, 2)
    )
    assert loss == pytest.approx(sigmoid_np(a, b, 10.0, -3.0, labels), rel=1e-10)
    np.testing.assert_allclose(g_a, numeric_grad(lambda x: sigmoid_np(x, b, 10.0, -3.0, labels), a), atol=1e-7)
    assert g_t == pytest.approx(
        numeric_grad(lambda t: sigmoid_np(a, b, np.exp(t[0]), -3.0, labels), [math.log(10.0)])[0], abs=1e-6
    )
    assert g_b == pytest.approx(numeric_grad(lambda c: sigmoid_np(a, b, 10.0, c[0], labels), [-3.0])[0], abs=1e-6)
    one_a, one_b = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])
    assert float(info_nce_loss(one_a, one_b, 0.0)[0]) == 0.0
    assert float(sigmoid_loss(one_a, one_b, 0.0, 1.0)[0]) == pytest.approx(math.log1p(math.exp(-1.0)))


def mask_proxy_case(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 5))
    proxies = rng.normal(size=(6, 5))
    return x / np.linalg.norm(x, axis=1, keepdims=True), proxies / np.linalg.norm(proxies, axis=1, keepdims=True)


@pytest.mark.parametrize("labels", [[3, 1, 3, 4, 1, 3, 0, 1], [0, 0, 1, 1, 2, 2, 0, 1]], ids=["absent", "all3"])
@pytest.mark.parametrize("multinomial", [False, True])
def test_mask_proxy(multinomial, labels, mask_proxy_np, numeric_grad):
    x, proxies = mask_proxy_case(0)
    labels = np.array(labels)
    proxies = proxies[: labels.max() + 1] if labels.max() == 2 else proxies  # all classes in the batch: no negatives
    queries, centroids = queries_and_centroids(jnp.asarray(x), jnp.asarray(labels))
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels) if (labels == c).sum() >= 2]
    assert np.flatnonzero(np.asarray(queries)).tolist() == sorted(first)
    for i in first:
        np.testing.assert_allclose(
            np.asarray(centroids)[i], x[(labels == labels[i]) & (np.arange(8) != i)].mean(0), atol=1e-12
        )

    def loss_fn(p, w, b):
        return mask_proxy_loss(x, centroids, labels, p, w, b, keep=queries, lamb=0.5, multinomial=multinomial)[0]

    loss, (g_p, g_w, g_b) = value_and_grad(loss_fn, proxies, 10.0, -5.0, argnums=(0, 1, 2))
    assert loss == pytest.approx(mask_proxy_np(x, labels, proxies, 10.0, -5.0, 0.5, multinomial), rel=1e-10)
    reference = numeric_grad(lambda p: mask_proxy_np(x, labels, p, 10.0, -5.0, 0.5, multinomial), proxies)
    np.testing.assert_allclose(g_p, reference, atol=1e-6)
    assert g_w == pytest.approx(
        numeric_grad(lambda w: mask_proxy_np(x, labels, proxies, w[0], -5.0, 0.5, multinomial), [10.0])[0], abs=1e-6
    )
    assert g_b == pytest.approx(
        numeric_grad(lambda b: mask_proxy_np(x, labels, proxies, 10.0, b[0], 0.5, multinomial), [-5.0])[0], abs=1e-6
    )
