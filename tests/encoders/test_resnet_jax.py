"""The jax ResNet (encoders/jax/resnet.py) against torchvision and the torch twin: parameter counts at full size; a
torchvision .pth file loaded into the jax backbone (research/jax/weights.py) gives torchvision's features; on
weights converted from the torch encoder (64 x 64 faces, a 2 x 2 last map) equal outputs in eval mode and after
one train-mode step equal outputs and BatchNorm running statistics."""

import jax
import numpy as np
import pytest
import torch
import torchvision
from flax import nnx

import encoders
from encoders.jax.convert import to_nnx, to_torch
from research.jax.weights import load_backbone
from tests.encoders.test_resnet_torch import randomise_batchnorm, saved_reference

B, IMAGE, DIM = 4, 64, 16
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def count(module) -> int:
    if isinstance(module, torch.nn.Module):
        return sum(p.numel() for p in module.parameters())
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("variant", ["resnet18", "resnet50"])
def test_parameter_counts_equal_torch(variant):
    """Full size (224 x 224, dim 512), built abstractly: the same count as the torch twin, whose backbone the torch
    test checks against torchvision's published figure."""
    spec = dict(variant=variant, dim=512, image_size=224)
    with torch.device("meta"):
        ref = encoders.build("torch", "resnet", **spec)
    enc = nnx.eval_shape(lambda: encoders.build("jax", "resnet", **spec, rngs=nnx.Rngs(0)))
    assert count(enc) == count(ref) and count(enc.backbone) == count(ref.backbone)


def faces(n: int, image: int) -> np.ndarray:
    return torch.rand(n, 3, image, image, generator=torch.Generator().manual_seed(1)).numpy()


@nnx.jit
def pooled_features(backbone: nnx.Module, face: np.ndarray) -> jax.Array:
    """The backbone's globally average-pooled features (B, C) of faces (B, 3, H, W) normalised for ImageNet."""
    x = (face.transpose(0, 2, 3, 1) - MEAN) / STD  # (B, H, W, 3)
    return backbone(x.astype(np.float32)).mean((1, 2))


def build_pair(variant: str) -> tuple[torch.nn.Module, nnx.Module]:
    """A torch encoder with random BatchNorm statistics and its jax twin holding the same weights."""
    torch.manual_seed(0)
    spec = dict(variant=variant, dim=DIM, image_size=IMAGE)
    ref = encoders.build("torch", "resnet", **spec)
    randomise_batchnorm(ref)
    enc = nnx.eval_shape(lambda: encoders.build("jax", "resnet", **spec, rngs=nnx.Rngs(0)))
    to_nnx({k: v.numpy() for k, v in ref.state_dict().items()}, enc)
    return ref, enc


def test_a_torchvision_file_loads_into_the_jax_backbone(tmp_path):
    """resnet18: torchvision's own .pth into the jax encoder's backbone (research/jax/weights.py: read, adapt, check
    strictly, convert.to_nnx) gives torchvision's features."""
    ref = saved_reference("resnet18", tmp_path / "resnet18.pth")
    _, enc = build_pair("resnet18")  # other weights, replaced below
    assert load_backbone(enc, "resnet", tmp_path / "resnet18.pth") == [
        "dropped the ImageNet classifier fc.weight, fc.bias"
    ]
    enc.eval()
    face = faces(2, IMAGE)
    with torch.no_grad():
        expected = ref(torchvision.transforms.functional.normalize(torch.from_numpy(face), MEAN, STD).float()).numpy()
    np.testing.assert_allclose(
        pooled_features(enc.backbone, face), expected, rtol=0, atol=1e-5 * np.abs(expected).max()
    )


forward = nnx.jit(lambda encoder, batch: encoder(batch))


def assert_same_outputs(out: encoders.EncoderOutput, ref: encoders.EncoderOutput) -> None:
    np.testing.assert_array_equal(np.asarray(out.mask), ref.mask.numpy())
    for part in ("tokens", "pooled"):
        x, y = np.asarray(getattr(out, part)), getattr(ref, part).detach().numpy()
        assert x.shape == y.shape, part
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5 * np.abs(y).max(), err_msg=part)


def test_eval_outputs_equal_torch():
    """resnet50: bottleneck blocks, a downsample without stride (layer1)."""
    ref, enc = build_pair("resnet50")
    face = faces(B, IMAGE)
    with torch.no_grad():
        expected = ref.eval()({"face": torch.from_numpy(face)})
    enc.eval()
    assert_same_outputs(forward(enc, {"face": face}), expected)


def test_one_train_step_gives_equal_outputs_and_running_statistics():
    """resnet18: basic blocks. (resnet50 in train mode differs from torch by 4e-5 of its scale, as much as torch's
    float32 from its float64: normalising by the statistics of 4 faces x 2 x 2 positions is ill-conditioned.)"""
    ref, enc = build_pair("resnet18")
    face = faces(B, IMAGE)
    with torch.no_grad():
        expected = ref.train()({"face": torch.from_numpy(face)})
    enc.train()
    assert_same_outputs(forward(enc, {"face": face}), expected)
    after, ref_after = to_torch(enc), {k: v.numpy() for k, v in ref.state_dict().items()}
    assert after.keys() == ref_after.keys()
    for key, value in ref_after.items():
        np.testing.assert_allclose(after[key], value, rtol=0, atol=1e-5 * max(1, np.abs(value).max()), err_msg=key)
    assert all(after[k] == 1 for k in after if k.endswith("num_batches_tracked"))
