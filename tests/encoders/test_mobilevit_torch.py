"""encoders/torch/mobilevit.py and encoders/checkpoints/mobilevit.py against timm.

A published file is imitated by a randomly initialised timm model (with its ImageNet head and random BatchNorm
statistics) saved with safetensors, timm's own format; nothing is downloaded. One full-size forward
(MobileViT-XXS at 256 px, batch 1).
"""

import pytest
import timm
import torch
from safetensors.torch import save_file

from encoders.checkpoints.mobilevit import adapt
from encoders.torch.mobilevit import VARIANTS, Mobilevit
from research.torch.weights import load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

# Parameters with the 1000-class ImageNet head, from timm's ImageNet results table (param_count of
# mobilevit_{xxs,xs,s}.cvnets_in1k; the paper, Mehta & Rastegari 2022, reports 1.3M / 2.3M / 5.6M).
PUBLISHED = {"mobilevit_xxs": 1.27e6, "mobilevit_xs": 2.32e6, "mobilevit_s": 5.58e6}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parameter_count_matches_timm(variant):
    """Backbone + a 1000-class head (features * 1000 + 1000, which num_classes=0 leaves out) within 0.5%."""
    with torch.device("meta"):
        enc = Mobilevit(variant, dim=512, image_size=256)
    features = VARIANTS[variant]["features"]
    assert enc.backbone.num_features == features
    assert abs(count(enc.backbone) + features * 1000 + 1000 - PUBLISHED[variant]) < 0.005 * PUBLISHED[variant]
    assert count(enc) == count(enc.backbone) + features * 512 + 512  # and the projection to dim


def test_published_weights_take_unnormalised_pixels():
    cfg = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=0).pretrained_cfg
    assert cfg["mean"] == (0.0,) * 3 and cfg["std"] == (1.0,) * 3


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        Mobilevit("mobilevit_m", dim=8, image_size=64)


def test_published_file_loads_and_equals_timm_at_full_size(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model("mobilevit_xxs", pretrained=False)  # with its ImageNet head
    randomise_batchnorm(ref)
    save_file(ref.state_dict(), str(tmp_path / "model.safetensors"))
    enc = Mobilevit("mobilevit_xxs", dim=32, image_size=256).eval()
    notes = load_backbone(enc, "mobilevit", tmp_path / "model.safetensors")
    assert notes == ["dropped the ImageNet classifier head.fc.weight, head.fc.bias"]
    face = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = enc({"face": face})
        fmap = ref.eval().forward_features(face)  # (1, 320, 8, 8)
        pooled = enc.proj(ref.forward_head(fmap, pre_logits=True))
        tokens = torch.cat([pooled[:, None], enc.proj(fmap.flatten(2).transpose(1, 2))], 1)  # summary, positions
    assert out.tokens.shape == (1, 1 + 64, 32) and out.mask.all()
    torch.testing.assert_close(out.pooled, pooled, rtol=0, atol=1e-5 * float(pooled.abs().max()))
    torch.testing.assert_close(out.tokens, tokens, rtol=0, atol=1e-5 * float(tokens.abs().max()))


def test_adapter_keeps_a_file_without_head():
    state = {"stem.conv.weight": torch.zeros(16, 3, 3, 3).numpy()}
    assert adapt(state, {"stem.conv.weight": (16, 3, 3, 3)}) == (state, [])
