"""ResNet (encoders/torch/resnet.py) against torchvision's ResNets: parameter counts, and features equal to a
torchvision model's after loading the .pth file it saves, through the adapter that drops its classifier."""

import numpy as np
import pytest
import torch
import torchvision

import encoders
from encoders.checkpoints import resnet as checkpoint
from research.torch.weights import load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

# torchvision's model cards (docs.pytorch.org/vision/stable/models, "Params"), with the ImageNet classifier fc.
PUBLISHED = {"resnet18": 11_689_512, "resnet50": 25_557_032}
FC = {"resnet18": 512 * 1000 + 1000, "resnet50": 2048 * 1000 + 1000}  # fc: C -> 1000 classes, with bias
WEIGHTS = {"resnet18": torchvision.models.ResNet18_Weights, "resnet50": torchvision.models.ResNet50_Weights}


@pytest.mark.parametrize("variant", list(PUBLISHED))
def test_parameter_counts_are_torchvision_s_without_the_classifier(variant):
    """Full size (224 x 224, dim 512) on the meta device: the backbone is the published ResNet less fc; the
    encoder adds proj (C -> dim) and pos (7 x 7 positions)."""
    assert WEIGHTS[variant].IMAGENET1K_V1.meta["num_params"] == PUBLISHED[variant]  # the card's figure, installed
    with torch.device("meta"):
        enc = encoders.build("torch", "resnet", variant=variant, dim=512, image_size=224)
    backbone = sum(p.numel() for p in enc.backbone.parameters())
    assert backbone == PUBLISHED[variant] - FC[variant]
    channels = {"resnet18": 512, "resnet50": 2048}[variant]
    assert sum(p.numel() for p in enc.parameters()) == backbone + channels * 512 + 512 + 49 * 512


def test_bad_variant_or_image_size_is_refused():
    with pytest.raises(ValueError, match="divisible by 32"):
        encoders.build("torch", "resnet", variant="resnet18", dim=8, image_size=48)
    with pytest.raises(ValueError, match="resnet50"):
        encoders.build("torch", "resnet", variant="resnet101", dim=8, image_size=64)


def test_adapter_drops_the_classifier_only():
    state = {"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.weight": np.zeros((1000, 512)), "fc.bias": np.zeros(1000)}
    adapted, notes = checkpoint.adapt(state, {})
    assert list(adapted) == ["conv1.weight"] and notes == ["dropped the ImageNet classifier fc.weight, fc.bias"]
    assert checkpoint.adapt(adapted, {}) == (adapted, [])


def saved_reference(variant: str, path) -> torch.nn.Module:
    """A random torchvision ResNet saved as torchvision publishes it (torch.save of its state dict), in eval mode
    and with its classifier replaced by nn.Identity afterwards (so it returns its pooled features)."""
    torch.manual_seed(0)
    ref = getattr(torchvision.models, variant)(weights=None)
    randomise_batchnorm(ref, var=(1, 3))
    torch.save(ref.state_dict(), path)
    ref.fc = torch.nn.Identity()
    return ref.eval()


# resnet50 at 64 x 64 (a 2 x 2 last map, batch 2); resnet18 at full size, 224 x 224 (the one full-size forward,
# batch 1).
@pytest.mark.parametrize("variant, image", [("resnet18", 224), ("resnet50", 64)])
def test_features_equal_torchvision_after_loading_its_file(variant, image, tmp_path):
    ref = saved_reference(variant, tmp_path / f"{variant}.pth")
    enc = encoders.build("torch", "resnet", variant=variant, dim=32, image_size=image).eval()
    notes = load_backbone(enc, "resnet", tmp_path / f"{variant}.pth")  # read, adapt, check strictly, load
    assert notes == ["dropped the ImageNet classifier fc.weight, fc.bias"]
    face = torch.rand(2, 3, image, image, generator=torch.Generator().manual_seed(1))[: 1 if image == 224 else 2]
    normalised = torchvision.transforms.functional.normalize(face, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        expected = ref(normalised)  # (B, C): torchvision's global average pool
        fmap = enc.feature_map(normalised)  # (B, C, H/32, W/32)
        out = enc({"face": face})
        pooled = enc.proj(expected)
    torch.testing.assert_close(fmap.mean((2, 3)), expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
    n = (image // 32) ** 2
    assert out.tokens.shape == (len(face), 1 + n, 32) and out.mask.shape == (len(face), 1 + n) and out.mask.all()
    atol = 1e-5 * float(pooled.abs().max())
    torch.testing.assert_close(out.pooled, pooled, rtol=0, atol=atol)
    torch.testing.assert_close(out.tokens[:, 1:].mean(1) - enc.pos.detach().mean(0), out.pooled, rtol=0, atol=atol)
