"""The jax iResNet (encoders/jax/iresnet.py) against its torch twin: parameter counts at full size, and on weights
converted from the torch encoder (iresnet18 at 32 x 32: a 2 x 2 last feature map) equal outputs in eval mode and
after one train-mode step equal outputs and BatchNorm running statistics."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

import encoders
from encoders.jax.convert import to_nnx, to_torch
from encoders.jax.layers import Buffer
from encoders.torch.iresnet import VARIANTS
from tests.encoders.test_iresnet_torch import PUBLISHED, tame

B, IMAGE, DIM = 4, 32, 16
SPEC = dict(variant="iresnet18", dim=DIM, image_size=IMAGE)


def count(module: nnx.Module, kind: type) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, kind)))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts_equal_torch(variant):
    """Full size (112 x 112, dim 512), built abstractly: the trainable parameters are torch's trainable ones, and
    the fixed features scale (a Buffer here) makes up the rest of insightface's count."""
    enc = nnx.eval_shape(
        lambda: encoders.build("jax", "iresnet", variant=variant, dim=512, image_size=112, rngs=nnx.Rngs(0))
    )
    with torch.device("meta"):
        ref = encoders.build("torch", "iresnet", variant=variant, dim=512, image_size=112)
    assert count(enc, nnx.Param) == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert count(enc.backbone, nnx.Param) + count(enc.backbone, Buffer) == PUBLISHED[variant]


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, nnx.Module]:
    torch.manual_seed(0)
    ref = encoders.build("torch", "iresnet", **SPEC)
    tame(ref)
    enc = nnx.eval_shape(lambda: encoders.build("jax", "iresnet", **SPEC, rngs=nnx.Rngs(0)))
    to_nnx({k: v.numpy() for k, v in ref.state_dict().items()}, enc)
    return ref, enc


def face() -> torch.Tensor:
    return torch.rand(B, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


forward = nnx.jit(lambda encoder, batch: encoder(batch))


def assert_same_outputs(out: encoders.EncoderOutput, ref: encoders.EncoderOutput) -> None:
    np.testing.assert_array_equal(np.asarray(out.mask), ref.mask.numpy())
    for part in ("tokens", "pooled"):
        x, y = np.asarray(getattr(out, part)), getattr(ref, part).detach().numpy()
        assert x.shape == y.shape and 0.5 < np.abs(y).max() < 50, part  # an absolute 1e-5 means something
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5, err_msg=part)


def test_eval_outputs_equal_torch(pair):
    ref, enc = pair
    with torch.no_grad():
        expected = ref.eval()({"face": face()})
    enc.eval()
    assert_same_outputs(forward(enc, {"face": face().numpy()}), expected)


def test_one_train_step_gives_equal_outputs_and_running_statistics(pair):
    """Batch statistics in every BatchNorm (features' BatchNorm1d included): equal outputs, and the running
    statistics and batch counts updated alike; the fixed features scale stays 1."""
    ref, enc = pair
    with torch.no_grad():
        expected = ref.train()({"face": face()})
    enc.train()
    assert_same_outputs(forward(enc, {"face": face().numpy()}), expected)
    after, ref_after = to_torch(enc), {k: v.numpy() for k, v in ref.state_dict().items()}
    assert after.keys() == ref_after.keys()
    for key, value in ref_after.items():
        np.testing.assert_allclose(after[key], value, rtol=0, atol=1e-5, err_msg=key)
    assert after["backbone.features.num_batches_tracked"] == 1 and (after["backbone.features.weight"] == 1).all()
