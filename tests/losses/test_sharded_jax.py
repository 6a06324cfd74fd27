"""Sharded class centres on 2 fake CPU devices: loss and gradients equal the unsharded head (every margin head).

Runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=2 (the device count is fixed when
jax starts), under a hard timeout and one retry: CPU collectives here sometimes deadlock at start. With
negative-centre sampling the reference is the unsharded head restricted to the sampled centres.
"""

import os
import subprocess
import sys

import numpy as np

WORLD, CLASSES, DIM, ROWS = 2, 24, 6, 8  # r = 0.5 keeps max(ceil(0.5 * 12), 8) = 8 of each block's 12 centres
BLOCK = CLASSES // WORLD
WEIGHTS = np.linspace(0.5, 1.5, CLASSES)
CASES = [  # (head, options, sample rates): every head unsampled, one sampled case per head family
    ("softmax", {}, (1.0,)),
    ("softmax", {"label_smoothing": 0.1, "class_weights": WEIGHTS}, (1.0, 0.5)),
    ("cosface", {}, (1.0,)),
    ("arcface", {}, (1.0, 0.5)),
    ("arcface", {"easy_margin": True, "label_smoothing": 0.1, "class_weights": WEIGHTS}, (1.0,)),
    ("arcface", {"detach_margin": True}, (1.0, 0.5)),  # the option lives in margin_logits (block_logits)
    ("sphereface", {"lambda_base": 0.0, "lambda_min": 0.0}, (1.0, 0.5)),  # the full margin, lambda = 0
    ("sphereface", {"scale": 30.0}, (1.0,)),
    ("sphereface_r", {}, (1.0,)),
    ("sphereface_r", {"version": "v0", "normalization": "soft"}, (1.0, 0.5)),
    ("sphereface2", {}, (1.0, 0.5)),
    ("sphereface2", {"margin_type": "A", "margin": 0.5}, (1.0,)),
]


def class_rows(params: dict, index) -> list:
    """The per-class parameter arrays of a head's Param state, restricted to `index`, plus shared ones."""
    if "linear" in params:
        return [params["linear"]["kernel"][:, index], params["linear"]["bias"][index]]
    return [params["weight"][index]] + ([params["bias"]] if "bias" in params else [])


def check(name: str, kwargs: dict, sample_rate: float, mesh) -> float:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import losses
    from losses.jax.sharded import ShardedHead

    full = losses.build("jax", name, dim=DIM, classes=CLASSES, **kwargs, rngs=nnx.Rngs(0))
    full.eval()  # sphereface's step stays put: a Buffer cannot be set inside the test's grad in jit
    x = 3.0 * jax.random.normal(jax.random.key(1), (ROWS, DIM))
    labels = jnp.array([0, 17, 3, 3, 21, 5, -1, 13])  # sample 6 is dropped (label -1)
    keep = labels >= 0

    def value_and_grad(module, labels, **kw):
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)

        def f(params, x, rest):
            m = nnx.merge(graphdef, params, rest)
            return m(x, labels, keep, **kw)[0], m.sampled if isinstance(m, ShardedHead) else None

        (loss, sampled), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(params, x, rest)
        return loss, nnx.to_pure_dict(grads[0]), grads[1], sampled

    loss, grads, x_grad, sampled = value_and_grad(
        ShardedHead(full, mesh=mesh, sample_rate=sample_rate), labels, key=jax.random.key(2)
    )
    grads = grads["head"]
    index = np.arange(CLASSES)
    reference = full
    if sample_rate < 1.0:
        index = np.asarray(sampled) + np.repeat(np.arange(WORLD) * BLOCK, len(sampled) // WORLD)
        assert len(index) < CLASSES and set(np.asarray(labels[keep]).tolist()) <= set(index.tolist()), index
        restricted = dict(kwargs)
        if "class_weights" in restricted:
            restricted["class_weights"] = restricted["class_weights"][index]
        reference = losses.build("jax", name, dim=DIM, classes=len(index), **restricted, rngs=nnx.Rngs(0))
        reference.eval()
        theirs = nnx.to_pure_dict(nnx.state(full, nnx.Param))
        mine = class_rows(theirs, index)
        nnx.update(
            reference,
            {"linear": {"kernel": mine[0], "bias": mine[1]}}
            if "linear" in theirs
            else {"weight": mine[0], **({"bias": mine[1]} if len(mine) > 1 else {})},
        )
        labels = jnp.where(keep, jnp.searchsorted(jnp.asarray(index), labels), labels)
        unsampled = np.setdiff1d(np.arange(CLASSES), index)
        assert all(np.all(g == 0) for g in class_rows(grads, unsampled)[: 2 if "linear" in grads else 1])
    ref_loss, ref_grads, ref_x_grad, _ = value_and_grad(reference, labels)
    pairs = [(loss, ref_loss), (x_grad, ref_x_grad)]
    pairs += zip(class_rows(grads, index), class_rows(ref_grads, np.arange(len(index))), strict=True)
    worst = 0.0
    for got, want in pairs:
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f"{name} {kwargs} r={sample_rate}")
        worst = max(worst, float(np.max(np.abs(np.asarray(got) - np.asarray(want)))))
    return worst


def main() -> None:
    import jax

    assert len(jax.devices()) == WORLD, jax.devices()
    mesh = jax.make_mesh((WORLD,), ("model",), axis_types=(jax.sharding.AxisType.Auto,))
    worst = 0.0
    for name, kwargs, rates in CASES:
        for rate in rates:
            worst = max(worst, check(name, kwargs, rate, mesh))
    print(f"OK worst abs deviation {worst:.2e}")


def test_sharded_heads_equal_the_unsharded_head_on_two_fake_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    for attempt in range(2):  # one retry: a CPU collective may deadlock at start
        try:
            done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            assert attempt == 0, "sharded jax heads timed out twice"
            continue
        assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr[-5000:]
        return


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main()
