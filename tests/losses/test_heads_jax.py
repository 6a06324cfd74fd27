"""Every jax head and pair-loss module against its torch twin on converted weights, in float32.

Loss, logits, scores and gradients (embedding and parameters) within 1e-5 on one batch under several keep
masks (all kept, some dropped with label -1, none kept) and feature norms (zero, tiny, huge); one sample and
one class; bf16 inputs; sphereface's annealing step. Each head's loss-and-gradient function is jitted once
(module fixture) and reused for every case: one compilation costs less CPU than eager jax's per-primitive ones.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import losses
from encoders.jax.convert import to_nnx, to_torch, variables
from losses.jax.contrastive import Contrastive
from losses.jax.cross_modal import CrossModal
from losses.jax.triplet import Triplet
from losses.torch.contrastive import Contrastive as TorchContrastive
from losses.torch.cross_modal import CrossModal as TorchCrossModal
from losses.torch.triplet import Triplet as TorchTriplet
from research.assembly import head_kwargs
from research.config import CLASS_HEADS, Config
from research.config_parse import apply_overrides

HEADS = CLASS_HEADS  # heads with class centres; the pair losses have tests of their own
KEEP = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=bool)  # class 0 keeps one sample (see test_keep_torch)
LABELS = np.arange(12) % 4
TOL = dict(rtol=1e-5, atol=1e-5)


def assert_gradients_close(actual, desired, **kwargs):
    """Within 1e-5 relative to the gradient's own scale: zero and tiny features have gradients ~1/||x||
    (1e12, 1e30) in which an entry that is a difference of such terms carries float32 noise of that size."""
    desired = np.asarray(desired)
    np.testing.assert_allclose(
        np.asarray(actual), desired, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(desired).max()), **kwargs
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def twins(name: str, classes: int = 4, class_weights: np.ndarray | None = None, *overrides: str):
    """(torch head, jax head with the torch head's weights), both in eval mode."""
    cfg = apply_overrides(Config(), [f"--loss={name}", "--model.dim=8", "--model.heads=1", *overrides])
    kwargs = head_kwargs(cfg, classes)
    torch.manual_seed(0)
    weights = None if class_weights is None else torch.tensor(class_weights)
    torch_head = losses.build("torch", name, class_weights=weights, **kwargs).eval()
    jax_head = losses.build("jax", name, class_weights=class_weights, **kwargs, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in torch_head.state_dict().items()}, jax_head)
    jax_head.eval()
    return torch_head, jax_head


def jax_loss_and_grads(head: nnx.Module):
    """Jitted (x, labels, keep) -> (loss, logits, dL/dx, {torch key: dL/dparam in torch layout})."""
    graphdef, params, rest = nnx.split(head, nnx.Param, ...)

    @jax.jit
    def run(params, x, labels, keep):
        def loss_fn(params, x):
            loss, logits = nnx.merge(graphdef, params, rest)(x, labels, keep)
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, x)
        return loss, logits, grads

    def call(x, labels, keep):
        loss, logits, (g_params, g_x) = run(params, jnp.asarray(x), jnp.asarray(labels), jnp.asarray(keep))
        return loss, logits, g_x, param_grads(graphdef, g_params, rest)

    return call


def param_grads(graphdef, g_params, rest) -> dict[str, np.ndarray]:
    """Gradients of the Params, merged into the module's structure and keyed and laid out as torch's."""
    holder = nnx.merge(graphdef, g_params, rest)
    params = {k for k, v in variables(holder).items() if isinstance(v, nnx.Param)}
    return {k: v for k, v in to_torch(holder).items() if k in params}


def torch_loss_and_grads(head: torch.nn.Module, x: np.ndarray, labels: np.ndarray, keep: np.ndarray | None):
    xt = torch.tensor(x, requires_grad=True)
    head.zero_grad()
    loss, logits = head(xt, torch.tensor(labels), None if keep is None else torch.tensor(keep))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in head.named_parameters()}
    return loss.detach().numpy(), logits.detach().numpy(), xt.grad.numpy(), grads


@pytest.fixture(scope="module")
def heads():
    found = {}
    for name in HEADS:
        torch_head, jax_head = twins(name)
        found[name] = (torch_head, jax_head, jax_loss_and_grads(jax_head))
    return found


def batch(scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(12, 8)) * scale).astype(np.float32)


CASES = {
    "all": (1.0, np.ones(12, bool)),
    "masked": (1.0, KEEP),
    "none_kept": (1.0, np.zeros(12, bool)),
    "zero_norm": (0.0, KEEP),
    "tiny_norm": (1e-30, KEEP),
    "huge_norm": (1e20, KEEP),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", HEADS)
def test_head_equals_torch_twin_in_loss_logits_scores_and_gradients(name, case, heads):
    torch_head, jax_head, run = heads[name]
    scale, keep = CASES[case]
    x, labels = batch(scale), np.where(keep, LABELS, -1)
    loss, logits, g_x, g_params = run(x, labels, keep)
    t_loss, t_logits, t_g_x, t_g_params = torch_loss_and_grads(torch_head, x, labels, keep)
    assert loss.dtype == jnp.float32 and np.isfinite(np.asarray(loss))
    np.testing.assert_allclose(np.asarray(loss), t_loss, **TOL)
    np.testing.assert_allclose(np.asarray(logits), t_logits, **TOL)
    np.testing.assert_allclose(
        np.asarray(jax_head.scores(jnp.asarray(x))), torch_head.scores(torch.tensor(x)).detach(), **TOL
    )
    assert np.isfinite(np.asarray(g_x)).all()
    assert_gradients_close(g_x, t_g_x)
    assert set(g_params) == set(t_g_params)
    for key, grad in g_params.items():
        assert_gradients_close(grad, t_g_params[key], err_msg=key)
    if case == "masked":  # the masked batch is the kept sub-batch (torch's subset as the reference)
        subset = torch_loss_and_grads(torch_head, x[keep], LABELS[keep], None)
        np.testing.assert_allclose(np.asarray(loss), subset[0], **TOL)
        assert_gradients_close(np.asarray(g_x)[keep], subset[2])
    if case == "none_kept":
        assert float(loss) == 0.0 and not np.asarray(g_x).any() and not any(g.any() for g in g_params.values())


@pytest.mark.parametrize("name", ["softmax", "arcface"])
def test_class_weights_equal_torch(name):
    torch_head, jax_head = twins(name, 4, np.array([0.5, 2.0, 1.0, 3.0], np.float32))
    x, labels = batch(), np.where(KEEP, LABELS, -1)
    loss, logits, g_x, _ = jax_loss_and_grads(jax_head)(x, labels, KEEP)
    t_loss, t_logits, t_g_x, _ = torch_loss_and_grads(torch_head, x, labels, KEEP)
    np.testing.assert_allclose(np.asarray(loss), t_loss, **TOL)
    assert_gradients_close(g_x, t_g_x)


@pytest.mark.parametrize("name", HEADS)
def test_one_sample_default_keep_and_bf16(name):
    # One sample (one class for the softmax-type heads: p = 1, loss 0), with the default keep=None.
    classes = 4 if name in ("sphereface2", "mask_proxy") else 1
    torch_head, jax_head = twins(name, classes)
    graphdef, params, rest = nnx.split(jax_head, nnx.Param, ...)

    @jax.jit
    def loss_and_grad(x, labels):
        fn = lambda e: nnx.merge(graphdef, params, rest)(e, labels)  # noqa: E731
        return jax.value_and_grad(fn, has_aux=True)(x)

    x = batch()[:1]
    (loss, logits), grad = loss_and_grad(jnp.asarray(x), jnp.array([0]))
    t_loss, t_logits = torch_head(torch.tensor(x), torch.tensor([0]))
    assert logits.shape == (1, classes) and np.isfinite(np.asarray(grad)).all()
    np.testing.assert_allclose(np.asarray(loss), t_loss.detach(), **TOL)
    if classes == 1:
        assert float(loss) == pytest.approx(0.0, abs=1e-6)
    # bf16 embeddings: the loss is computed in float32, equal to the loss of the same values in float32.
    x16 = jnp.asarray(batch()).astype(jnp.bfloat16)
    (loss16, logits16), grad16 = loss_and_grad(x16, jnp.asarray(LABELS % classes))
    (loss32, _), _ = loss_and_grad(x16.astype(jnp.float32), jnp.asarray(LABELS % classes))
    assert loss16.dtype == jnp.float32 and logits16.dtype == jnp.float32 and np.isfinite(np.asarray(logits16)).all()
    assert grad16.dtype == jnp.bfloat16 and np.isfinite(np.asarray(grad16.astype(jnp.float32))).all()
    np.testing.assert_allclose(np.asarray(loss16), np.asarray(loss32), rtol=1e-6, atol=1e-6)


def test_sphereface_annealing_step_follows_torch():
    torch_head, jax_head = twins("sphereface")
    torch_head.train()
    jax_head.train()
    x, labels = batch(), LABELS
    for keep in (KEEP, np.zeros(12, bool), KEEP):  # nothing kept: the schedule does not advance
        t_loss, _ = torch_head(torch.tensor(x), torch.tensor(np.where(keep, labels, -1)), torch.tensor(keep))
        loss, _ = jax_head(jnp.asarray(x), jnp.asarray(np.where(keep, labels, -1)), jnp.asarray(keep))
        np.testing.assert_allclose(np.asarray(loss), t_loss.detach(), **TOL)
        assert int(jax_head.step[...]) == int(torch_head.step)
    assert int(jax_head.step[...]) == 2
    np.testing.assert_allclose(float(jax_head.lamb()), max(5.0, 1000.0 / (1 + 0.12 * 2)), rtol=1e-6)
    jax_head.eval()
    jax_head(jnp.asarray(x), jnp.asarray(labels))
    assert int(jax_head.step[...]) == 2


def test_validation_errors_match_torch():
    for kwargs, match in [
        (dict(name="sphereface2", dim=4, classes=1), "at least 2 classes"),
        (dict(name="sphereface2", dim=4, classes=3, label_smoothing=0.1), "label_smoothing"),
        (dict(name="mask_proxy", dim=4, classes=3, class_weights=np.ones(3)), "class_weights"),
        (dict(name="sphereface", dim=4, classes=3, margin=1.5), "positive integer"),
        (dict(name="sphereface_r", dim=4, classes=3, version="v3"), "version"),
    ]:
        with pytest.raises(ValueError, match=match):
            losses.build("jax", rngs=nnx.Rngs(0), **kwargs)


def pair_modules():
    halves = lambda m, e, y, k: m(e[:, :4], e[:, 4:], y, keep=k)  # noqa: E731 pair i = (e[i, :4], e[i, 4:])
    return {
        "triplet": (TorchTriplet(margin=0.3), Triplet(margin=0.3), lambda m, e, y, k: m(e, y, keep=k)),
        "semi_hard": (
            TorchTriplet(mining="semi_hard"),
            Triplet(mining="semi_hard"),
            lambda m, e, y, k: m(e, y, keep=k),
        ),
        "contrastive": (
            TorchContrastive(margin=1.2),
            Contrastive(margin=1.2),
            lambda m, e, y, k: m(e[:, :4], e[:, 4:], y % 2 == 0, keep=k),
        ),
        "infonce": (TorchCrossModal(), CrossModal(), halves),
        "sigmoid": (TorchCrossModal("sigmoid", bias_init=-2.0), CrossModal("sigmoid", bias_init=-2.0), halves),
    }


@pytest.mark.parametrize("name", ["triplet", "semi_hard", "contrastive", "infonce", "sigmoid"])
def test_pair_modules_equal_torch_with_keep(name):
    torch_module, jax_module, call = pair_modules()[name]
    to_nnx({k: v.numpy() for k, v in torch_module.state_dict().items()}, jax_module)
    x, labels = batch(), np.where(KEEP, LABELS, -1)
    xt = torch.tensor(x, requires_grad=True)
    t_loss, t_out = call(torch_module, xt, torch.tensor(labels), torch.tensor(KEEP))
    t_loss.backward()
    graphdef, params, rest = nnx.split(jax_module, nnx.Param, ...)

    def loss_fn(params, e):
        loss, out = call(nnx.merge(graphdef, params, rest), e, jnp.asarray(labels), jnp.asarray(KEEP))
        return loss, out

    (loss, out), (g_params, g_x) = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(
        params, jnp.asarray(x)
    )
    np.testing.assert_allclose(np.asarray(loss), t_loss.detach(), **TOL)
    np.testing.assert_allclose(np.asarray(out), t_out.detach(), **TOL)
    assert_gradients_close(g_x, xt.grad)
    for key, grad in param_grads(graphdef, g_params, rest).items():
        assert_gradients_close(grad, dict(torch_module.named_parameters())[key].grad, err_msg=key)
    assert math.isfinite(float(loss))
