"""encoders/jax/convert.py against real torch modules: every layer kind, both directions, bit-exact."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from encoders.jax import layers
from encoders.jax.convert import to_nnx, to_torch, torch_key, torch_shapes


class TorchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.tdnn = nn.Conv1d(4, 5, 3, dilation=2, padding=2)
        self.blocks = nn.ModuleList(nn.LayerNorm(5) for _ in range(2))
        self.heads = nn.ModuleDict({"a": nn.Linear(5, 2), "b": nn.Linear(5, 3, bias=False)})
        self.embed = nn.Embedding(7, 5)
        self.null = nn.Parameter(torch.randn(1, 1, 5))


class JaxNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Sequential(
            layers.Conv2d(3, 4, 3, padding=1, rngs=rngs), layers.BatchNorm(4, rngs=rngs), nnx.relu
        )
        self.tdnn = layers.Conv1d(4, 5, 3, dilation=2, padding=2, rngs=rngs)
        self.blocks = nnx.List([layers.LayerNorm(5, rngs=rngs) for _ in range(2)])
        self.heads = nnx.Dict({"a": layers.Linear(5, 2, rngs=rngs), "b": layers.Linear(5, 3, bias=False, rngs=rngs)})
        self.embed = layers.Embed(7, 5, rngs=rngs)
        self.null = nnx.Param(jnp.zeros((1, 1, 5)))


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    net = TorchNet()
    with torch.no_grad():  # non-trivial norms and statistics, so a swapped leaf shows
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net.stem[1].running_mean.normal_()
        net.stem[1].running_var.uniform_(0.5, 2.0)
        net.stem[1].num_batches_tracked.fill_(3)
    twin = JaxNet(rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in net.state_dict().items()}, twin)
    return net, twin


def test_round_trip_is_bit_identical(pair):
    net, twin = pair
    back = to_torch(twin)
    state = net.state_dict()
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert torch.equal(torch.from_numpy(back[key]), value), key


def test_converted_layers_compute_what_torch_computes(pair):
    net, twin = pair
    net.eval()
    twin.eval()
    x = torch.randn(2, 3, 6, 6)
    y_torch = net.stem(x)  # (B, C, H, W)
    y_jax = twin.stem(jnp.asarray(x.permute(0, 2, 3, 1).numpy()))  # (B, H, W, C)
    np.testing.assert_allclose(np.asarray(y_jax), y_torch.permute(0, 2, 3, 1).detach().numpy(), atol=1e-5)
    s = torch.randn(2, 4, 9)
    np.testing.assert_allclose(
        np.asarray(twin.tdnn(jnp.asarray(s.transpose(1, 2).numpy()))),
        net.tdnn(s).transpose(1, 2).detach().numpy(),
        atol=1e-5,
    )
    h = torch.randn(2, 5)
    for name in ("a", "b"):
        np.testing.assert_allclose(
            np.asarray(twin.heads[name](jnp.asarray(h.numpy()))), net.heads[name](h).detach().numpy(), atol=1e-6
        )
    np.testing.assert_allclose(
        np.asarray(twin.blocks[1](jnp.asarray(h.numpy()))), net.blocks[1](h).detach().numpy(), atol=1e-6
    )
    ids = torch.tensor([0, 6, 3])
    np.testing.assert_array_equal(np.asarray(twin.embed(jnp.asarray(ids.numpy()))), net.embed(ids).detach().numpy())


def test_strict_about_missing_unexpected_and_misshapen_keys(pair):
    net, twin = pair
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    with pytest.raises(KeyError, match="missing.*stem.1.running_var"):
        to_nnx({k: v for k, v in state.items() if k != "stem.1.running_var"}, twin)
    with pytest.raises(KeyError, match="unexpected.*extra"):
        to_nnx(state | {"extra": np.zeros(1)}, twin)
    with pytest.raises(ValueError, match="null"):
        to_nnx(state | {"null": np.zeros((1, 5))}, twin)


def test_key_rules():
    assert torch_key("stem.0.kernel") == "stem.0.weight"
    assert torch_key("blocks.1.scale") == "blocks.1.weight"
    assert torch_key("embed.embedding") == "embed.weight"
    assert torch_key("stem.1.running_var") == "stem.1.running_var"


def test_torch_shapes_are_the_torch_modules_shapes_also_for_an_abstract_module():
    want = {k: tuple(v.shape) for k, v in TorchNet().state_dict().items()}
    assert torch_shapes(JaxNet(rngs=nnx.Rngs(0))) == want
    assert torch_shapes(nnx.eval_shape(lambda: JaxNet(rngs=nnx.Rngs(0)))) == want
