"""encoders/jax/mobilevit.py against its torch twin (timm's ByobNet) on converted weights.

MobileViT-XXS at 48 px, where the 3 x 3 map of the fourth stage is resized to whole 2 x 2 patches and back;
the parameter counts and state-dict shapes are those of all three full models, built abstractly.
"""

import jax
import numpy as np
import pytest
import timm
import torch
from flax import nnx
from safetensors.torch import save_file

from encoders.jax import mobilevit as jax_mobilevit
from encoders.jax.convert import to_nnx, to_torch, variables
from encoders.torch import mobilevit as torch_mobilevit
from research.jax.weights import load_backbone as jax_load_backbone
from research.torch.weights import load_backbone as torch_load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

IMAGE, DIM, RTOL = 48, 32, 1e-5  # tolerance relative to the largest output (random BatchNorm makes it large)


def torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An NNX array's shape in torch's layout: conv kernels (kh, kw, I, O) -> (O, I, kh, kw), Linear transposed."""
    return {4: lambda s: (s[3], s[2], s[0], s[1]), 2: lambda s: s[::-1]}.get(len(shape), lambda s: s)(tuple(shape))


@pytest.mark.parametrize("variant", sorted(jax_mobilevit.VARIANTS))
def test_full_size_counts_and_shapes_equal_torch(variant):
    """Whole encoder: the same parameter count and the same state-dict keys and shapes as timm's model."""
    with torch.device("meta"):
        ref = torch_mobilevit.Mobilevit(variant, dim=512, image_size=256)
    enc = nnx.eval_shape(lambda: jax_mobilevit.Mobilevit(variant, dim=512, image_size=256, rngs=nnx.Rngs(0)))
    params = jax.tree.leaves(nnx.state(enc, nnx.Param))
    assert sum(int(np.prod(x.shape)) for x in params) == sum(p.numel() for p in ref.parameters())
    shapes = {key: torch_shape(var.get_value().shape) for key, var in variables(enc).items()}
    assert shapes == {key: tuple(value.shape) for key, value in ref.state_dict().items()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[torch.nn.Module, nnx.Module]:
    """A random timm MobileViT-XXS with random BatchNorm statistics, saved with its head as a published file;
    the file loaded into the torch encoder and into its jax twin (research/{torch,jax}/weights.py), which holds
    the torch encoder's other weights (the projection) converted. (A train step updates both alike, so the
    tests may share them in any order.)"""
    path = tmp_path_factory.mktemp("mobilevit") / "model.safetensors"
    torch.manual_seed(0)
    published = timm.create_model("mobilevit_xxs", pretrained=False)
    randomise_batchnorm(published)
    save_file(published.state_dict(), str(path))
    ref = torch_mobilevit.Mobilevit("mobilevit_xxs", dim=DIM, image_size=IMAGE)
    enc = nnx.eval_shape(lambda: jax_mobilevit.Mobilevit("mobilevit_xxs", dim=DIM, image_size=IMAGE, rngs=nnx.Rngs(0)))
    to_nnx({k: v.numpy() for k, v in ref.state_dict().items()}, enc)  # before the file: random weights
    for load_backbone, encoder in ((torch_load_backbone, ref), (jax_load_backbone, enc)):
        assert load_backbone(encoder, "mobilevit", path) == [
            "dropped the ImageNet classifier head.fc.weight, head.fc.bias"
        ]
    return ref, enc


FACE = torch.rand(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
forward = nnx.jit(lambda encoder, batch: encoder(batch))


def assert_same_outputs(out, expected) -> None:
    np.testing.assert_array_equal(np.asarray(out.mask), expected.mask.numpy())
    for x, y in ((out.tokens, expected.tokens), (out.pooled, expected.pooled)):
        assert x.shape == y.shape and float(y.abs().max()) > 0.05
        np.testing.assert_allclose(np.asarray(x), y.numpy(), rtol=0, atol=RTOL * float(y.abs().max()))


def test_published_file_gives_eval_outputs_equal_torch(pair):
    """Eval mode; tokens are the 2 x 2 positions of the last map after the summary."""
    ref, enc = pair
    with torch.no_grad():
        expected = ref.eval()({"face": FACE})
    enc.eval()
    out = forward(enc, {"face": FACE.numpy()})
    assert out.tokens.shape == (2, 1 + 4, DIM)
    assert_same_outputs(out, expected)


def test_one_train_step_gives_equal_outputs_and_running_statistics(pair):
    ref, enc = pair
    with torch.no_grad():
        expected = ref.train()({"face": FACE})
    enc.train()
    assert_same_outputs(forward(enc, {"face": FACE.numpy()}), expected)
    after, ref_after = to_torch(enc), {k: v.numpy() for k, v in ref.state_dict().items()}
    assert after.keys() == ref_after.keys()
    for key, value in ref_after.items():
        np.testing.assert_allclose(after[key], value, rtol=0, atol=1e-5, err_msg=key)
    assert all(after[k] == ref_after[k] > 0 for k in ref_after if k.endswith("num_batches_tracked"))
