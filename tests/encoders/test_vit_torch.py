"""encoders/torch/vit.py and encoders/checkpoints/vit.py against timm.

Published files are imitated by randomly initialised timm models saved with safetensors (timm's own format);
nothing is downloaded. One full-size forward (ViT-S/16 at 224 px, batch 1); everything else is small.
"""

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.vision_transformer import checkpoint_filter_fn

from encoders.checkpoints.vit import adapt, bicubic
from encoders.torch.vit import MEAN, STD, VARIANTS, Vit
from research.torch.weights import load_backbone

# Parameters with the 1000-class ImageNet head, from timm's ImageNet results table (param_count; the
# Hugging Face model cards of vit_small_patch16_224.augreg_in21k_ft_in1k / vit_base_patch16_224.augreg2_in21k_ft_in1k
# round them to 22.1M / 86.6M).
PUBLISHED = {"vit_s16": 22.05e6, "vit_b16": 86.57e6}
SMALL = 64  # px: a 4 x 4 grid


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parameter_count_matches_timm(variant):
    """Backbone + a 1000-class head (width * 1000 + 1000, which num_classes=0 leaves out) within 0.5%."""
    with torch.device("meta"):
        enc = Vit(variant, dim=512, image_size=224)
    width = VARIANTS[variant]["width"]
    assert abs(count(enc.backbone) + width * 1000 + 1000 - PUBLISHED[variant]) < 0.005 * PUBLISHED[variant]
    assert count(enc) == count(enc.backbone) + width * 512 + 512  # and the projection to dim


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_normalisation_is_the_published_weights(variant):
    cfg = timm.create_model(VARIANTS[variant]["timm"], pretrained=False, num_classes=0, depth=1).pretrained_cfg
    assert cfg["mean"] == (MEAN,) * 3 and cfg["std"] == (STD,) * 3


def test_unknown_variant_and_image_size_are_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        Vit("vit_l16", dim=8, image_size=224)
    with pytest.raises(ValueError, match="multiple of the patch"):
        Vit("vit_s16", dim=8, image_size=100)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A random timm ViT-S/16 at 224 px with its ImageNet head, saved as timm's safetensors files are."""
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    path = tmp_path_factory.mktemp("vit") / "model.safetensors"
    save_file(ref.state_dict(), str(path))
    return ref, path


def test_published_file_loads_and_equals_timm_at_full_size(published):
    ref, path = published
    enc = Vit("vit_s16", dim=32, image_size=224).eval()
    assert load_backbone(enc, "vit", path) == ["dropped the ImageNet classifier head.weight, head.bias"]
    face = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = enc({"face": face})
        expected = ref.forward_features((face - 0.5) / 0.5)  # (1, 197, 384)
        pooled = enc.proj(ref.forward_head(expected, pre_logits=True))
    assert out.tokens.shape == (1, 1 + 196, 32) and out.mask.all()
    torch.testing.assert_close(out.pooled, pooled, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        out.tokens, torch.cat([pooled[:, None], enc.proj(expected[:, 1:])], 1), rtol=0, atol=1e-5
    )


def test_published_file_resampled_to_a_small_grid_equals_timms_loader(published):
    """A 224 px file into a 64 px encoder: the adapter's NumPy resampling equals timm's checkpoint_filter_fn
    (resample_abs_pos_embed: CLS kept, bicubic with antialiasing), and so do the features."""
    ref, path = published
    enc = Vit("vit_s16", dim=32, image_size=SMALL).eval()
    notes = load_backbone(enc, "vit", path)
    assert (
        notes[1]
        == "resampled pos_embed (1, 197, 384) -> (1, 17, 384) (bicubic with antialiasing, as timm; CLS position kept)"
    )
    small = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=SMALL).eval()
    state = checkpoint_filter_fn(ref.state_dict(), small)
    small.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")}, strict=True)
    pos, expected_pos = enc.backbone.pos_embed.detach(), small.pos_embed.detach()
    torch.testing.assert_close(pos[:, 0], ref.pos_embed.detach()[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(pos, expected_pos, rtol=0, atol=1e-5 * float(expected_pos.abs().max()))
    face = torch.rand(2, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x, expected = enc.backbone.forward_features((face - 0.5) / 0.5), small.forward_features((face - 0.5) / 0.5)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize(
    "size_in, size_out", [((14, 14), (4, 4)), ((14, 14), (7, 7)), ((14, 14), (24, 24)), ((5, 7), (3, 11))]
)
def test_bicubic_equals_torch_interpolate(size_in, size_out, antialias):
    """Shrinking and enlarging, square and not: equal to torch's float64 result to rounding, and to its
    float32 result (which computes its weights in float32) within 1e-5."""
    x = np.random.default_rng(0).standard_normal((2, 3, *size_in))
    for dtype, atol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        expected = F.interpolate(
            torch.from_numpy(x.astype(dtype)), size=size_out, mode="bicubic", align_corners=False, antialias=antialias
        )
        np.testing.assert_allclose(bicubic(x.astype(dtype), size_out, antialias), expected.numpy(), rtol=0, atol=atol)


def test_adapter_keeps_a_matching_grid_and_a_head_the_backbone_has():
    state = {"pos_embed": np.zeros((1, 17, 8), np.float32), "head.weight": np.zeros((3, 8), np.float32)}
    shapes = {"pos_embed": (1, 17, 8), "head.weight": (3, 8)}
    out, notes = adapt(state, shapes)
    assert notes == [] and out.keys() == state.keys()
