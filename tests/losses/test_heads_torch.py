"""The head contract for every classification head built from the config, edge inputs, and bf16 training."""

import dataclasses

import pytest
import torch

import losses
from losses.torch.contrastive import Contrastive
from losses.torch.cross_modal import CrossModal
from losses.torch.triplet import Triplet
from research.assembly import head_kwargs
from research.config import CLASS_HEADS, Config, LossConfig
from research.config_parse import apply_overrides

HEADS = CLASS_HEADS  # heads with class centres; the pair losses have tests of their own


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits when other processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, classes: int = 4, dim: int = 8, *overrides: str) -> torch.nn.Module:
    cfg = apply_overrides(Config(), [f"--loss={name}", f"--model.dim={dim}", "--model.heads=1", *overrides])
    return losses.build("torch", name, class_weights=None, **head_kwargs(cfg, classes))


def batch(size: int = 8, dim: int = 8, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % classes  # every class at least twice when size >= 2 * classes (MP needs it)
    return torch.randn(size, dim, generator=g), labels


def test_every_head_name_has_a_section_or_is_softmax():
    names = {f.name for f in dataclasses.fields(LossConfig)}
    assert set(HEADS) - names == {"softmax"}


@pytest.mark.parametrize("name", HEADS)
def test_contract_shapes_dtypes_and_cli_overrides(name):
    head = build(name)
    x, y = batch()
    loss, logits = head(x, y)
    assert loss.shape == () and loss.dtype == torch.float32
    assert logits.shape == (8, 4) and head.scores(x).shape == (8, 4)
    assert head.scores(x).argmax(1).shape == (8,)
    section = getattr(Config().loss, name, None)
    if section is not None:  # a dotted override reaches the head's keyword of the same name
        field = next(f for f in dataclasses.fields(section) if f.type in ("float", float))
        value = getattr(section, field.name) + 0.25
        assert getattr(build(name, 4, 8, f"--loss.{name}.{field.name}={value}"), field.name) == value


@pytest.mark.parametrize("name", HEADS)
def test_bf16_autocast_computes_the_loss_in_float32(name):
    torch.manual_seed(0)
    head = build(name)
    x, y = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = head(x.bfloat16(), y)
    head.eval()  # the annealing step of sphereface must not move between the two calls
    reference, _ = build_same(head, name)(x.bfloat16().float(), y)
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-6)


def build_same(head: torch.nn.Module, name: str) -> torch.nn.Module:
    twin = build(name)
    twin.load_state_dict(head.state_dict())
    return twin.train(head.training)


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e20])
def test_zero_tiny_and_huge_norm_features_give_finite_loss_and_gradients(name, scale):
    head = build(name)
    x, y = batch()
    x = (x * scale).requires_grad_(True)
    loss, _ = head(x, y)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", [n for n in HEADS if n not in ("sphereface2", "mask_proxy")])
def test_one_sample_and_a_single_class(name):
    head = build(name, classes=1)
    x = torch.randn(1, 8, requires_grad=True)
    loss, logits = head(x, torch.tensor([0]))
    loss.backward()
    assert logits.shape == (1, 1) and loss.item() == pytest.approx(0.0, abs=1e-6)  # one class: p = 1
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["sphereface2", "mask_proxy"])
def test_binary_and_proxy_heads_with_one_sample(name):
    head = build(name)
    x = torch.randn(1, 8, requires_grad=True)
    loss, _ = head(x, torch.tensor([2]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["softmax", "sphereface", "cosface", "arcface", "mask_proxy"])
def test_heads_differentiable_by_design_pass_gradcheck(name):
    torch.manual_seed(0)
    head = build(name).double().eval()
    x, y = batch()
    x = x.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: head(e, y)[0], (x,))


LARGE_SCALES = {
    "softmax": [],
    "sphereface": ["--loss.sphereface.lambda_base=0", "--loss.sphereface.lambda_min=0"],  # no annealing help
    "sphereface_r": ["--loss.sphereface_r.scale=128"],
    "sphereface2": ["--loss.sphereface2.scale=128"],
    "cosface": ["--loss.cosface.scale=128"],
    "arcface": ["--loss.arcface.scale=128"],
    "mask_proxy": ["--loss.mask_proxy.scale_init=64"],
}


def train_bf16(loss_fn, params, steps: int = 300):
    """Train a linear embedding + loss under bf16 autocast; return every loss value."""
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 8)
    opt = torch.optim.SGD([*net.parameters(), *params], lr=0.5)
    data, labels = torch.randn(64, 16) * 3, torch.arange(64) % 8
    values = []
    for _ in range(steps):
        idx = torch.randperm(64)[:32]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_fn(net(data[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.detach())
    return torch.stack(values), [*net.parameters(), *params]


@pytest.mark.parametrize("name", HEADS)
def test_bf16_training_with_large_scales_stays_finite(name):
    head = build(name, 8, 8, *LARGE_SCALES[name])
    values, params = train_bf16(lambda e, y: head(e, y)[0], list(head.parameters()))
    assert values.dtype == torch.float32
    assert torch.isfinite(values).all() and all(torch.isfinite(p).all() for p in params)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Triplet(),
        lambda: Triplet(mining="semi_hard"),
        lambda: Contrastive(),
        lambda: CrossModal(),
        lambda: CrossModal("sigmoid"),
    ],
)
def test_bf16_training_of_pair_losses_stays_finite(make):
    module = make()

    def loss_fn(e, y):
        if isinstance(module, Triplet):
            return module(e, y)[0]
        half = len(e) // 2  # pairs (first half, second half) of the batch
        if isinstance(module, Contrastive):
            return module(e[:half], e[half:], y[:half] == y[half:])[0]
        return module(e[:half], e[half:], y[:half])[0]

    values, params = train_bf16(loss_fn, list(module.parameters()))
    assert values.dtype == torch.float32
    assert torch.isfinite(values).all() and all(torch.isfinite(p).all() for p in params)
