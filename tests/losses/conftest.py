"""NumPy references for the loss tests of both twins, written from the published formulas, in float64: each
reference is a plain function here and a fixture of the same name without the underscore."""

import numpy as np
import pytest


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over rows of -log softmax(logits)[label]."""
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def _numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar NumPy function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _cosface_np(cos, labels, s, m, cross_entropy):
    logits = cos.copy()
    logits[np.arange(len(labels)), labels] -= m
    return cross_entropy(s * logits, labels)


def _arc_target_np(c, m, easy):
    """cos(theta + m) with theta = arccos(c), falling back (insightface's conditions) to c - m sin m
    where c <= cos(pi - m), or to c where c <= 0 with the easy margin."""
    phi = np.cos(np.arccos(np.clip(c, -1, 1)) + m)
    if easy:
        return np.where(c > 0, phi, c)
    return np.where(c > np.cos(np.pi - m), phi, c - m * np.sin(m))


def _arcface_np(cos, labels, s, m, easy, cross_entropy):
    logits = cos.copy()
    rows = np.arange(len(labels))
    logits[rows, labels] = _arc_target_np(cos[rows, labels], m, easy)
    return cross_entropy(s * logits, labels)


def _soft_cross_entropy_np(logits, target):
    """mean_i -sum_j target_ij log softmax(logits)_ij."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -(target * logp).sum(1).mean()


def _info_nce_np(a, b, scale, labels=None):
    logits = scale * _unit(a) @ _unit(b).T
    match = np.eye(len(a)) if labels is None else (labels[:, None] == labels[None]).astype(float)
    rows = _soft_cross_entropy_np(logits, match / match.sum(1, keepdims=True))
    cols = _soft_cross_entropy_np(logits.T, match.T / match.T.sum(1, keepdims=True))
    return (rows + cols) / 2


def _sigmoid_np(a, b, scale, bias, labels=None):
    logits = scale * _unit(a) @ _unit(b).T + bias
    match = np.eye(len(a)) if labels is None else (labels[:, None] == labels[None]).astype(float)
    z = 2 * match - 1
    return np.log1p(np.exp(-z * logits)).sum() / len(a)


def _logsumexp_np(a):
    top = a.max()
    return top + np.log(np.exp(a - top).sum())


def _mask_proxy_np(x, labels, proxies, w, b, lamb, multinomial):
    """x (B, D) unit vectors; proxies (C, D) unit vectors. Returns the loss as a float."""
    classes = [c for c in dict.fromkeys(labels.tolist()) if (labels == c).sum() >= 2]
    classes = sorted(classes)
    queries = np.stack([x[np.flatnonzero(labels == c)[0]] for c in classes])
    centroids = np.stack([x[np.flatnonzero(labels == c)[1:]].mean(0) for c in classes])
    absent = [k for k in range(len(proxies)) if k not in classes]

    def sim(u, v):
        return w * float(u @ v) + b

    regulariser = 0.0
    for j, cj in enumerate(centroids):
        row = np.array([sim(cj, proxies[c]) for c in classes])
        regulariser += (_logsumexp_np(row) - row[j]) / len(classes)
    if not multinomial:
        main = 0.0
        for i, q in enumerate(queries):
            centres = proxies.copy()
            centres[classes] = centroids
            row = np.array([sim(q, centre) for centre in centres])
            main += (_logsumexp_np(row) - row[classes[i]]) / len(classes)
        return main + lamb * regulariser
    cn = _unit(centroids)
    positive = np.log1p(sum(np.exp(-sim(q, cn[i])) for i, q in enumerate(queries)))
    neg_proxies = np.mean([np.log1p(sum(np.exp(sim(q, proxies[k])) for k in absent)) for q in queries])
    neg_pairs = np.mean(
        [np.log1p(sum(np.exp(sim(q, cn[j])) for j in range(len(classes)) if j != i)) for i, q in enumerate(queries)]
    )
    return positive + neg_proxies + neg_pairs + lamb * regulariser


def _contrastive_np(a, b, same, m):
    d = np.linalg.norm(_unit(a) - _unit(b), axis=1)
    return np.mean(np.where(same, d**2, np.maximum(0, m - d) ** 2)) / 2


def _pair_distances_np(x, squared):
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    return d**2 if squared else d


def _batch_hard_np(x, labels, m, squared):
    d, losses = _pair_distances_np(x, squared), []
    for a in range(len(x)):
        pos = [d[a, p] for p in range(len(x)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(x)) if labels[n] != labels[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + m))
    return np.mean(losses)


def _semi_hard_np(x, labels, m, squared):
    d, losses = _pair_distances_np(x, squared), []
    for a in range(len(x)):
        neg = [d[a, n] for n in range(len(x)) if labels[n] != labels[a]]
        for p in range(len(x)):
            if p == a or labels[p] != labels[a] or not neg:
                continue
            beyond = [v for v in neg if v > d[a, p]]
            chosen = min(beyond) if beyond else max(neg)
            losses.append(max(0.0, d[a, p] - chosen + m))
    return np.mean(losses)


def _softmax_np(logits, labels, smoothing, weights, log_softmax):
    """l_n = -(1-e) w[y_n] log p[n,y_n] - (e/C) sum_c w[c] log p[n,c]; loss = sum_n l_n / sum_n w[y_n]."""
    n, c = logits.shape
    w = np.ones(c) if weights is None else weights
    logp = log_softmax(logits)
    per = -(1 - smoothing) * w[labels] * logp[np.arange(n), labels] - smoothing / c * (logp * w).sum(1)
    return per.sum() / w[labels].sum()


def _similarity_adjustment_np(z, t):
    return 2 * ((z + 1) / 2) ** t - 1


def _softplus_np(z):
    return np.logaddexp(0, z)


def _logistic_np(z):
    return 1 / (1 + np.exp(-z))


def _sphereface2_logits_np(cos, labels, b, kind, r, m, t):
    """r * (margined, adjusted cosine) + b, from the paper's definitions of SphereFace2-C / A / M."""
    rows = np.arange(len(labels))
    theta_y = np.arccos(np.clip(cos[rows, labels], -1, 1))
    z = _similarity_adjustment_np(cos, t) + (m if kind == "C" else 0.0)
    if kind == "C":
        z[rows, labels] = _similarity_adjustment_np(cos[rows, labels], t) - m
    elif kind == "A":
        z[rows, labels] = _similarity_adjustment_np(np.cos(np.minimum(theta_y + m, np.pi)), t)
    else:
        z[rows, labels] = _similarity_adjustment_np(np.cos(np.minimum(m * theta_y, np.pi)), t)
    return r * z + b


def _sphereface2_np(cos, labels, b, kind, lamb, r, m, t):
    """lambda/r softplus(-target logit) + (1-lambda)/r sum_{i != y} softplus(logit_i), batch mean."""
    z = _sphereface2_logits_np(cos, labels, b, kind, r, m, t)
    positive = np.zeros_like(z, dtype=bool)
    positive[np.arange(len(labels)), labels] = True
    per = np.where(positive, lamb * _softplus_np(-z), (1 - lamb) * _softplus_np(z)) / r
    return per.sum(1).mean()


def _sphereface_r_cosines_np(cos, labels, version, m):
    """The forward values written from the definitions, with theta = arccos(cos)."""
    theta = np.arccos(np.clip(cos, -1, 1))
    out = cos.copy()
    rows = np.arange(len(labels))
    t = theta[rows, labels]
    if version == "v0":
        k = np.floor(m * t / np.pi)
        out[rows, labels] = (-1.0) ** k * np.cos(m * t) - 2 * k
    elif version == "v1":
        out[rows, labels] = np.cos(np.minimum(m * t, np.pi))
    else:
        out = np.cos(theta / m)
        out[rows, labels] = cos[rows, labels]
    return out


def _softmax_probs_np(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _psi_np(c, m):
    theta = np.arccos(np.clip(c, -1, 1))
    k = np.minimum(np.floor(m * theta / np.pi), m - 1)  # theta = pi belongs to the last interval
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


def _sphereface_np(cos, norms, labels, m, lamb, cross_entropy):
    logits = cos.copy()
    rows = np.arange(len(labels))
    logits[rows, labels] = (lamb * cos[rows, labels] + _psi_np(cos[rows, labels], m)) / (1 + lamb)
    return cross_entropy(norms * logits, labels)


@pytest.fixture
def log_softmax():
    return _log_softmax


@pytest.fixture
def cross_entropy():
    return _cross_entropy


@pytest.fixture
def numeric_grad():
    return _numeric_grad


@pytest.fixture
def cosface_np():
    return _cosface_np


@pytest.fixture
def arc_target_np():
    return _arc_target_np


@pytest.fixture
def arcface_np():
    return _arcface_np


@pytest.fixture
def soft_cross_entropy_np():
    return _soft_cross_entropy_np


@pytest.fixture
def info_nce_np():
    return _info_nce_np


@pytest.fixture
def sigmoid_np():
    return _sigmoid_np


@pytest.fixture
def logsumexp_np():
    return _logsumexp_np


@pytest.fixture
def mask_proxy_np():
    return _mask_proxy_np


@pytest.fixture
def contrastive_np():
    return _contrastive_np


@pytest.fixture
def pair_distances_np():
    return _pair_distances_np


@pytest.fixture
def batch_hard_np():
    return _batch_hard_np


@pytest.fixture
def semi_hard_np():
    return _semi_hard_np


@pytest.fixture
def softmax_np():
    return _softmax_np


@pytest.fixture
def similarity_adjustment_np():
    return _similarity_adjustment_np


@pytest.fixture
def softplus_np():
    return _softplus_np


@pytest.fixture
def logistic_np():
    return _logistic_np


@pytest.fixture
def sphereface2_logits_np():
    return _sphereface2_logits_np


@pytest.fixture
def sphereface2_np():
    return _sphereface2_np


@pytest.fixture
def sphereface_r_cosines_np():
    return _sphereface_r_cosines_np


@pytest.fixture
def softmax_probs_np():
    return _softmax_probs_np


@pytest.fixture
def psi_np():
    return _psi_np


@pytest.fixture
def sphereface_np():
    return _sphereface_np


@pytest.fixture
def unit():
    return _unit
