"""VGG16 (encoders/torch/vgg.py) against torchvision's VGG16: parameter counts, and fc7 features equal to a
torchvision model's after loading the .pth file it saves, through the adapter that drops classifier.6."""

import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import encoders
from encoders.checkpoints import vgg as checkpoint
from research.torch.weights import load_backbone

# torchvision's model card (docs.pytorch.org/vision/stable/models, "Params"), with the ImageNet classifier fc8.
PUBLISHED = 138_357_544
FC8 = 4096 * 1000 + 1000  # classifier.6: 4096 -> 1000 classes, with bias


def test_parameter_count_is_torchvision_s_without_fc8():
    """Full size (224 x 224, dim 512) on the meta device: the backbone is the published VGG16 less fc8; the
    encoder adds embed (4096 -> dim), proj (512 -> dim) and pos (7 x 7 positions)."""
    assert torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["num_params"] == PUBLISHED  # the card, installed
    with torch.device("meta"):
        enc = encoders.build("torch", "vgg", variant="vgg16", dim=512, image_size=224)
    backbone = sum(p.numel() for p in enc.backbone.parameters())
    assert backbone == PUBLISHED - FC8 == 134_260_544
    assert sum(p.numel() for p in enc.parameters()) == backbone + (4096 + 512 + 1) * 512 + 512 + 49 * 512


def test_bad_variant_or_image_size_is_refused():
    with pytest.raises(ValueError, match="divisible by 32"):
        encoders.build("torch", "vgg", variant="vgg16", dim=8, image_size=112)
    with pytest.raises(ValueError, match="vgg16"):
        encoders.build("torch", "vgg", variant="vgg19", dim=8, image_size=64)


def test_adapter_drops_fc8_only():
    state = {"features.0.weight": np.zeros((64, 3, 3, 3)), "classifier.6.weight": np.zeros((1000, 4096))}
    adapted, notes = checkpoint.adapt(state | {"classifier.6.bias": np.zeros(1000)}, {})
    assert list(adapted) == ["features.0.weight"]
    assert notes == ["dropped the ImageNet classifier classifier.6.weight, classifier.6.bias"]
    assert checkpoint.adapt(adapted, {}) == (adapted, [])


@functools.cache
def loaded_pair() -> tuple[torch.nn.Module, torch.nn.Module, list[str]]:
    """A random torchvision VGG16 saved as torchvision publishes it (torch.save of its state dict), an encoder
    (dim 32, 32 x 32 faces) whose backbone loaded that file (research/torch/weights.py), and the loader's notes.
    Both in eval mode; the reference's classifier.6 is then replaced by nn.Identity, so it returns fc7's features.
    Full-size weights (fc6 alone has 103 M): cached, test_vgg_jax.py uses them too."""
    torch.manual_seed(0)
    ref = torchvision.models.vgg16(weights=None)
    enc = encoders.build("torch", "vgg", variant="vgg16", dim=32, image_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ref.state_dict(), Path(tmp) / "vgg16.pth")
        notes = load_backbone(enc, "vgg", Path(tmp) / "vgg16.pth")  # read, adapt, check strictly, load
    ref.classifier[6] = torch.nn.Identity()
    return ref.eval(), enc.eval(), notes


def faces() -> torch.Tensor:
    """Two 32 x 32 faces: a 1 x 1 last map, which torchvision's adaptive pool repeats to 7 x 7."""
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[torch.nn.Module, torch.nn.Module, list[str]]]:
    yield loaded_pair()
    loaded_pair.cache_clear()  # the suite does not keep the 1 GB of weights (test_vgg_jax.py runs first)


def test_features_equal_torchvision_after_loading_its_file(pair):
    ref, enc, notes = pair
    assert notes == ["dropped the ImageNet classifier classifier.6.weight, classifier.6.bias"]
    normalised = torchvision.transforms.functional.normalize(faces(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = ref(normalised)  # (B, 4096): fc7 after its ReLU
        features = enc.backbone(normalised)
        out = enc({"face": faces()})
        pooled = enc.embed(expected)
    assert expected.abs().max() > 0.01  # not all zero after the ReLUs
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    assert out.tokens.shape == (2, 2, 32) and out.mask.shape == (2, 2) and out.mask.all()
    torch.testing.assert_close(out.pooled, pooled, rtol=0, atol=1e-5 * float(pooled.abs().max()))
