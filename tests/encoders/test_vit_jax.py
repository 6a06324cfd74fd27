"""encoders/jax/vit.py against its torch twin (timm's VisionTransformer) on converted weights.

The parity tests use two blocks (a test-only variant added to both VARIANTS dicts) at 48 px (a 3 x 3 grid);
the parameter counts are those of the full models, built abstractly.
"""

import jax
import numpy as np
import pytest
import timm
import torch
from flax import nnx
from safetensors.torch import save_file
from timm.models.vision_transformer import checkpoint_filter_fn

from encoders.jax import vit as jax_vit
from encoders.jax.convert import to_nnx, variables
from encoders.torch import vit as torch_vit
from research.jax.weights import load_backbone

TEST_VARIANT = "vit_s16_2blocks"  # test only: ViT-S/16 with 2 of its 12 blocks
IMAGE, DIM, ATOL = 48, 32, 1e-5


def count_jax(module: nnx.Module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("variant", sorted(jax_vit.VARIANTS))
def test_full_size_counts_and_keys_equal_torch(variant):
    """Whole encoder at 224 px: the same parameter count and the same state-dict keys as the torch twin."""
    with torch.device("meta"):
        ref = torch_vit.Vit(variant, dim=512, image_size=224)
    enc = nnx.eval_shape(lambda: jax_vit.Vit(variant, dim=512, image_size=224, rngs=nnx.Rngs(0)))
    assert count_jax(enc) == sum(p.numel() for p in ref.parameters())
    assert set(variables(enc)) == set(ref.state_dict())


def build_pair() -> tuple[torch.nn.Module, nnx.Module]:
    """A random torch encoder (2 blocks, 48 px) and its jax twin holding the converted weights."""
    with pytest.MonkeyPatch.context() as mp:
        for module in (torch_vit, jax_vit):
            mp.setitem(module.VARIANTS, TEST_VARIANT, dict(module.VARIANTS["vit_s16"], depth=2))
        torch.manual_seed(0)
        ref = torch_vit.Vit(TEST_VARIANT, dim=DIM, image_size=IMAGE).eval()
        enc = nnx.eval_shape(lambda: jax_vit.Vit(TEST_VARIANT, dim=DIM, image_size=IMAGE, rngs=nnx.Rngs(0)))
    to_nnx({k: v.numpy() for k, v in ref.state_dict().items()}, enc)
    return ref, enc


FACE = torch.rand(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
forward = nnx.jit(lambda encoder, batch: encoder(batch))


def test_outputs_equal_torch():
    ref, enc = build_pair()
    with torch.no_grad():
        expected = ref({"face": FACE})
    out = forward(enc, {"face": FACE.numpy()})
    np.testing.assert_array_equal(np.asarray(out.mask), expected.mask.numpy())
    for x, y in ((out.tokens, expected.tokens), (out.pooled, expected.pooled)):
        assert x.shape == y.shape and 0.05 < float(y.abs().max()) < 20
        np.testing.assert_allclose(np.asarray(x), y.numpy(), rtol=0, atol=ATOL)


def test_published_file_loads_into_the_jax_backbone(tmp_path):
    """A timm file at 224 px (2 blocks, with its head) into the jax encoder's backbone (research/jax/weights.py:
    read, adapt, check strictly, convert.to_nnx): its features equal timm's own model at 48 px loaded through
    timm's checkpoint_filter_fn."""
    torch.manual_seed(2)
    published = timm.create_model("vit_small_patch16_224", pretrained=False, depth=2)
    save_file(published.state_dict(), str(tmp_path / "model.safetensors"))
    _, enc = build_pair()  # other weights, replaced below
    notes = load_backbone(enc, "vit", tmp_path / "model.safetensors")
    assert notes[0] == "dropped the ImageNet classifier head.weight, head.bias" and len(notes) == 2
    small = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, depth=2, img_size=IMAGE)
    filtered = checkpoint_filter_fn(published.state_dict(), small)
    small.eval().load_state_dict({k: v for k, v in filtered.items() if not k.startswith("head.")}, strict=True)
    x = (FACE - 0.5) / 0.5
    with torch.no_grad():
        expected = small.forward_features(x)  # (2, 10, 384)
    got = nnx.jit(lambda m, x: m(x))(enc.backbone, np.transpose(x.numpy(), (0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=0, atol=ATOL * float(expected.abs().max()))
