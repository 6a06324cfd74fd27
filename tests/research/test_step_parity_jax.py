"""One jax training step equals one torch step from the same weights on the same batch (weights converted
with encoders/jax/convert.py, dropout off): updated parameters, BatchNorm statistics and Adam moments;
and the learning-rate schedules agree at every step."""

import itertools

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from encoders.jax.convert import to_nnx, to_torch
from research.data.loader import load
from research.jax import ema as jax_ema
from research.jax import trainer as jax_trainer
from research.jax.distributed import make_mesh
from research.jax.model import build_model as build_jax
from research.jax.predict import replicate
from research.jax.predict import to_device as jax_device
from research.torch import ema as torch_ema
from research.torch import trainer as torch_trainer
from research.torch.model import build_model as build_torch
from research.torch.predict import to_device as torch_device
from research.training import class_weights


@pytest.mark.parametrize(("warmup", "total"), [(3, 17), (0, 10)])
def test_schedule_equals_torch_at_every_step(warmup, total):
    optimizer = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=2e-3)
    scheduler = torch_trainer.warmup_cosine(optimizer, warmup, total)
    expected = []
    for _ in range(total + 3):  # and past the end
        expected.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    got = jax_trainer.warmup_cosine(2e-3, warmup, total)(jnp.arange(total + 3))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6 * 2e-3)  # float32 of the peak lr


@pytest.mark.parametrize("encoder_lr_scale", [1.0, 0.25])
def test_one_step_updates_parameters_and_moments_as_torch(tiny, encoder_lr_scale):
    # Weight decay large enough that decaying a bias by mistake shows; clipping that triggers; smoothing and
    # class weights in the loss; learned late fusion: two streams and the combination loss; and the encoders
    # at a quarter of the learning rate (torch's parameter groups, optax's masked scale of the update).
    cfg = tiny(
        "--fusion=late", "--model.combine=learned", "--modalities=face,text", "--model.dropout=0",
        "--optim.weight_decay=0.5", "--optim.clip=0.1", "--loss.label_smoothing=0.1", "--loss.class_weights=balanced",
        f"--optim.encoder_lr_scale={encoder_lr_scale}",
    )  # fmt: skip
    splits = load(cfg.data)
    classes = len(splits.classes["identity"])
    weights = class_weights(cfg, splits.train.labels("target"), classes)
    batch = next(iter(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True)))

    torch.manual_seed(0)
    tmodel = build_torch(cfg, classes, splits.vocab_size, torch.from_numpy(weights)).train()
    jmodel = build_jax(cfg, classes, splits.vocab_size, jnp.asarray(weights), rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in tmodel.state_dict().items()}, jmodel)

    initial = {k: v.clone() for k, v in tmodel.state_dict().items()}
    optimizer = torch_trainer.make_optimizer(tmodel, cfg)
    scheduler = torch_trainer.warmup_cosine(optimizer, 2, 10)
    encoder = {id(p) for p in tmodel.encoders.parameters()}
    lrs = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {lrs[i] for i in encoder} == {cfg.optim.lr * encoder_lr_scale}
    assert {lr for i, lr in lrs.items() if i not in encoder} == {cfg.optim.lr}
    torch_measured = torch_trainer.train_step(
        tmodel, optimizer, scheduler, torch_device(batch, torch.device("cpu")), cfg
    )

    schedule = jax_trainer.warmup_cosine(cfg.optim.lr, 2, 10)
    tx = jax_trainer.make_optimizer(schedule, cfg)
    graphdef, rngs, state = jax_trainer.train_state(jmodel, tx)
    mesh = make_mesh()
    state = replicate(state, mesh)
    step = jax_trainer.make_train_step(graphdef, rngs, tx, schedule, cfg, mesh)
    state, jax_measured = step(state, jax_device(batch, mesh), 0)

    assert float(jax_measured["loss"]) == pytest.approx(torch_measured["loss"], abs=1e-5)
    assert float(jax_measured["grad_norm"]) == pytest.approx(torch_measured["grad_norm"], rel=1e-5)
    assert torch_measured["grad_norm"] > cfg.optim.clip  # the clipping was active
    assert float(jax_measured["lr"]) == pytest.approx(torch_measured["lr"], rel=1e-6)

    nnx.update(jmodel, state["params"], state["variables"])
    updated, expected = to_torch(jmodel), tmodel.state_dict()
    assert updated.keys() == expected.keys()
    # Adam's first step moves a weight by lr * g / (|g| + eps): where |g| is within a few orders of eps, float
    # rounding of g (summation order differs between the frameworks) changes that step by a visible fraction
    # of lr. Those weights (a few in 1e4 here) are compared to within lr; all others to 1e-5.
    grads = {n: p.grad.numpy() for n, p in tmodel.named_parameters()}
    conditioned = {n: (np.abs(g) > 1e-7) | (g == 0) for n, g in grads.items()}  # unused embedding rows: g = 0
    assert sum(c.sum() for c in conditioned.values()) > 0.999 * sum(c.size for c in conditioned.values())
    for key, value in expected.items():  # parameters and BatchNorm running statistics
        well = conditioned.get(key, np.ones(value.shape, bool))
        np.testing.assert_allclose(updated[key][well], value.numpy()[well], atol=1e-5, rtol=0, err_msg=key)
        np.testing.assert_allclose(updated[key], value.numpy(), atol=cfg.optim.lr, rtol=0, err_msg=key)
    assert max(float((expected[k].double() - initial[k].double()).abs().max()) for k in expected) > 1e-3  # it moved
    torch_moments = {n: optimizer.state[p] for n, p in tmodel.named_parameters()}
    # First moments are (1 - b1) g, of order 1e-2; second moments (1 - b2) g^2 are tiny, so relative to their scale.
    for slot, field, scale in (("exp_avg", "mu", 1.0), ("exp_avg_sq", "nu", 1e-3)):
        nnx.update(jmodel, optax.tree_utils.tree_get(state["optim"], field))
        moments = to_torch(jmodel)
        for name, slots in torch_moments.items():
            got, want = moments[name] / scale, slots[slot].numpy() / scale
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{slot} {name}")


def test_the_weight_average_after_a_few_steps_equals_torch(tiny):
    # optim.ema: three AdamW steps on three batches in each backend from the same weights, the average (decay 0.5,
    # so every step shows) updated after each; BatchNorm statistics averaged, its counter copied.
    cfg = tiny("--fusion=late", "--modalities=face,text", "--model.dropout=0", "--optim.ema=0.5")
    splits = load(cfg.data)
    classes = len(splits.classes["identity"])
    batches = list(itertools.islice(splits.train.batches(8, shuffle=True, seed=0, epoch=1, train=True), 3))

    torch.manual_seed(0)
    tmodel = build_torch(cfg, classes, splits.vocab_size, None).train()
    jmodel = build_jax(cfg, classes, splits.vocab_size, None, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in tmodel.state_dict().items()}, jmodel)
    initial = {k: v.clone().numpy() for k, v in tmodel.state_dict().items()}
    optimizer = torch_trainer.make_optimizer(tmodel, cfg)
    scheduler = torch_trainer.warmup_cosine(optimizer, 2, 10)
    average = torch_ema.make(tmodel, cfg.optim.ema)
    for batch in batches:
        torch_trainer.train_step(tmodel, optimizer, scheduler, torch_device(batch, torch.device("cpu")), cfg)
        torch_ema.update(average, tmodel, cfg.optim.ema)

    schedule = jax_trainer.warmup_cosine(cfg.optim.lr, 2, 10)
    tx = jax_trainer.make_optimizer(schedule, cfg)
    graphdef, rngs, state = jax_trainer.train_state(jmodel, tx)
    state["ema"] = jax_ema.make(state, cfg.optim.ema)
    mesh = make_mesh()
    state = replicate(state, mesh)
    step = jax_trainer.make_train_step(graphdef, rngs, tx, schedule, cfg, mesh)
    for number, batch in enumerate(batches):
        state, _ = step(state, jax_device(batch, mesh), number)

    nnx.update(jmodel, state["ema"]["params"], state["ema"]["variables"])
    got, want = to_torch(jmodel), average.state_dict()
    assert got.keys() == want.keys()
    counters = [k for k in want if k.endswith("num_batches_tracked")]
    assert counters and all(int(want[k]) == 3 and int(got[k]) == 3 for k in counters)  # copied, not averaged
    close = 0
    for key, value in want.items():  # Adam's ill-conditioned weights (the one-step test above): to within lr a step
        np.testing.assert_allclose(got[key], value.numpy(), atol=3 * cfg.optim.lr, rtol=0, err_msg=key)
        close += int((np.abs(got[key] - value.numpy()) <= 1e-5).sum())
    assert close > 0.999 * sum(v.numel() for v in want.values())
    # The average is not the last weights, nor the first: 0.125 initial + 0.125, 0.25, 0.5 of the steps' weights.
    trained = tmodel.state_dict()
    assert max(float(np.abs(want[k].numpy() - trained[k].numpy()).max()) for k in want) > 1e-4
    assert max(float(np.abs(want[k].numpy() - initial[k]).max()) for k in want) > 1e-4
