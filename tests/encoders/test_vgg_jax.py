"""The jax VGG16 (encoders/jax/vgg.py) against torchvision and the torch twin: the adaptive average pool against
torch's, parameter counts at full size, and on the weights of test_vgg_torch.py's encoder (loaded from a
torchvision file, converted with convert.to_nnx) fc7 features equal to torchvision's and equal outputs in eval
mode. (VGG16 has no BatchNorm: no running statistics to compare after a train-mode step; its dropout draws other
masks than torch's.)"""

import jax
import numpy as np
import pytest
import torch
import torchvision
from flax import nnx

import encoders
from encoders.jax.convert import to_nnx
from encoders.jax.layers import adaptive_avg_pool2d
from tests.encoders.test_vgg_torch import faces, loaded_pair

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.mark.parametrize("size", [3, 10])
def test_adaptive_average_pool_equals_torch_s(size):
    """Maps of 3 x 4 (smaller than the 7 x 7 output: repeated positions) and 10 x 11 (overlapping bins); the 1 x 1
    map of 32 x 32 faces is in the tests below."""
    x = np.random.default_rng(size).standard_normal((2, size, size + 1, 3)).astype(np.float32)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 7)
    np.testing.assert_allclose(adaptive_avg_pool2d(x, 7), expected.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-6)


def test_parameter_count_equals_torch():
    """Full size (224 x 224, dim 512), built abstractly: the same count as the torch twin, whose backbone the torch
    test checks against torchvision's published figure."""
    spec = dict(variant="vgg16", dim=512, image_size=224)
    with torch.device("meta"):
        ref = encoders.build("torch", "vgg", **spec)
    enc = nnx.eval_shape(lambda: encoders.build("jax", "vgg", **spec, rngs=nnx.Rngs(0)))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(enc, nnx.Param))) == sum(p.numel() for p in ref.parameters())


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module, nnx.Module]:
    """torchvision's VGG16 (fc7 out), the torch encoder that loaded its file, and the jax twin of that encoder."""
    ref, enc, _ = loaded_pair()
    twin = nnx.eval_shape(
        lambda: encoders.build("jax", "vgg", variant="vgg16", dim=32, image_size=32, rngs=nnx.Rngs(0))
    )
    to_nnx({k: v.numpy() for k, v in enc.state_dict().items()}, twin)
    nnx.reseed(twin, default=0)  # the dropout stream, abstract after eval_shape
    twin.eval()
    return ref, enc, twin


def test_backbone_features_equal_torchvision(pair):
    ref, _, twin = pair
    normalised = torchvision.transforms.functional.normalize(faces(), MEAN, STD)
    with torch.no_grad():
        expected = ref(normalised).numpy()  # (B, 4096)
    x = nnx.jit(lambda backbone, x: backbone(x))(twin.backbone, normalised.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_eval_outputs_equal_torch(pair):
    _, enc, twin = pair
    with torch.no_grad():
        expected = enc({"face": faces()})
    out = nnx.jit(lambda encoder, batch: encoder(batch))(twin, {"face": faces().numpy()})
    np.testing.assert_array_equal(np.asarray(out.mask), expected.mask.numpy())
    for part in ("tokens", "pooled"):
        x, y = np.asarray(getattr(out, part)), getattr(expected, part).numpy()
        assert x.shape == y.shape, part
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5 * np.abs(y).max(), err_msg=part)
