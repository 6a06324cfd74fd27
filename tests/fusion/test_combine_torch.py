"""Late fusion's score combinations against NumPy references, and channel stacking's masked
adaptive pooling against torch's adaptive_avg_pool1d on the valid tokens."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax, softmax

import fusion
from fusion.torch.stack import masked_adaptive_pool

B, C, D = 5, 6, 8
STREAMS = ("face", "text", "voice")
# Sample 0: all present; 1: text missing; 2: only voice; 3: face missing; 4: none (-> uniform).
PRESENT = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=bool)  # (B, M)


def late(combine: str) -> torch.nn.Module:
    return fusion.build("torch", "late", dim=D, modalities=("voice", "face", "text"), combine=combine)


def inputs(seed: int = 0) -> tuple[np.ndarray, dict, dict]:
    lp = log_softmax(np.random.default_rng(seed).normal(size=(len(STREAMS), B, C)) * 2, -1)  # (M, B, C)
    log_probs = {s: torch.tensor(lp[i], dtype=torch.float64) for i, s in enumerate(STREAMS)}
    present = {s: torch.tensor(PRESENT[:, i]) for i, s in enumerate(STREAMS)}
    return lp, log_probs, present


def reference(rule: str, lp: np.ndarray, weight_logits: np.ndarray) -> np.ndarray:
    """Per sample, straight from the definitions, over the present streams only."""
    out = np.empty((B, C))
    for b in range(B):
        idx = np.flatnonzero(PRESENT[b])
        if len(idx) == 0:
            out[b] = np.log(np.full(C, 1 / C))
        elif rule == "mean":
            out[b] = np.log(np.exp(lp[idx, b]).mean(0))
        elif rule == "product":
            prod = np.exp(lp[idx, b]).prod(0)
            out[b] = np.log(prod / prod.sum())
        else:
            w = softmax(weight_logits[idx])
            out[b] = log_softmax((w[:, None] * lp[idx, b]).sum(0))
    return out


@pytest.mark.parametrize("rule", ["mean", "product", "learned"])
def test_combine_matches_numpy_reference(rule):
    module = late(rule).double()
    weight_logits = np.array([0.3, -1.2, 0.8])
    if rule == "learned":
        module.weight_logits.data = torch.tensor(weight_logits)
    lp, log_probs, present = inputs()
    got = module.combine(log_probs, present).detach().numpy()
    np.testing.assert_allclose(got, reference(rule, lp, weight_logits), atol=1e-10)
    assert module.learns_combination == (rule == "learned")


@pytest.mark.parametrize("rule", ["mean", "product", "learned"])
def test_combine_ignores_absent_streams(rule):
    module = late(rule).double()
    _, log_probs, present = inputs()
    before = module.combine(log_probs, present)
    # New scores for every stream; keep the present ones as they were.
    _, other, _ = inputs(seed=1)
    changed = {s: torch.where(present[s][:, None], log_probs[s], other[s]) for s in STREAMS}
    assert torch.equal(module.combine(changed, present), before)
    assert not torch.equal(module.combine(other, present), before)  # the test can fail


def test_mean_and_product_by_hand():
    """Two streams with p = (0.8, 0.2) and (0.4, 0.6): mean (0.6, 0.4); product (0.32, 0.12) / 0.44."""
    log_probs = {"face": torch.tensor([[0.8, 0.2]]).log(), "voice": torch.tensor([[0.4, 0.6]]).log()}
    present = {"face": torch.tensor([True]), "voice": torch.tensor([True])}
    mean = fusion.build("torch", "late", dim=D, modalities=("face", "voice"), combine="mean")
    product = fusion.build("torch", "late", dim=D, modalities=("face", "voice"), combine="product")
    assert mean.combine(log_probs, present).exp()[0].tolist() == pytest.approx([0.6, 0.4])
    assert product.combine(log_probs, present).exp()[0].tolist() == pytest.approx([0.32 / 0.44, 0.12 / 0.44])


def test_unknown_combination_is_an_error():
    with pytest.raises(ValueError, match="combine"):
        late("max")


@pytest.mark.parametrize("name", ["early", "stack", "cross_attn", "gated"])
def test_one_stream_combine_is_the_stream(name):
    kwargs = {
        "early": dict(layers=1, heads=2, dropout=0.0),
        "stack": dict(tokens=2),
        "cross_attn": dict(layers=1, heads=2, dropout=0.0),
        "gated": {},
    }[name]
    module = fusion.build("torch", name, dim=D, modalities=("face",), **kwargs)
    lp = torch.randn(B, C).log_softmax(-1)
    assert module.combine({"fused": lp}, {"face": torch.ones(B, dtype=torch.bool)}) is lp
    assert module.streams == ("fused",) and not module.learns_combination


@pytest.mark.parametrize("length", [0, 1, 2, 3, 5, 7, 9])
def test_masked_adaptive_pool_matches_adaptive_avg_pool_on_valid_tokens(length):
    """Valid tokens scattered (not a prefix) among padding: the result equals adaptive_avg_pool1d over
    the valid tokens taken in order, and is zero when there is none."""
    gen = torch.Generator().manual_seed(length)
    n, t = 12, 4
    keep = torch.zeros(1, n, dtype=torch.bool)
    keep[0, torch.randperm(n, generator=gen)[:length]] = True
    x = torch.randn(1, n, D, generator=gen)
    x[~keep] = float("nan")  # padding must not leak, even when not finite
    got = masked_adaptive_pool(x, keep, t)  # (1, T, D)
    if length == 0:
        assert torch.equal(got, torch.zeros(1, t, D))
    else:
        expected = F.adaptive_avg_pool1d(x[keep].T[None], t)[0].T  # (T, D)
        torch.testing.assert_close(got[0], expected)
