"""iResNet (encoders/torch/iresnet.py) against insightface's published backbones, which cannot be downloaded here.

The facts below come from reading insightface recognition/arcface_torch/backbones/iresnet.py (commit d9cb10e):
- parameter counts, num_features 512, 112 x 112 faces, counted by instantiating that file's iresnet18/50/100 (on
  the meta device) and summing the numel of `parameters()` (the frozen features scale included);
- the published state dict's keys and shapes (`published_shapes`): what that file's IResNet saves with
  `state_dict()`, which is what backbone.pth holds (arcface_torch's train.py saves `backbone.module.state_dict()`).
"""

import math

import numpy as np
import pytest
import torch

import encoders
from encoders.checkpoints import iresnet as checkpoint
from encoders.torch.iresnet import VARIANTS
from research.checkpoint_files import CheckpointError
from research.torch.weights import load_backbone

PUBLISHED = {"iresnet18": 24_025_600, "iresnet50": 43_590_848, "iresnet100": 65_156_160}
WIDTHS = (64, 128, 256, 512)


def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    stats = {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}
    return {f"{prefix}.{name}": shape for name, shape in stats.items()}


def published_shapes(blocks: tuple[int, ...], dim: int = 512, grid: int = 7) -> dict[str, tuple[int, ...]]:
    """insightface IResNet's state-dict keys and shapes: stem conv1/bn1/prelu; per block bn1, conv1 (3x3, stride
    1), bn2, prelu, conv2 (3x3, the stage's stride 2 in block 0), bn3, and in block 0 downsample.0 (1x1 conv) and
    downsample.1 (BN); then bn2, fc (512 grid^2 -> dim), features (BatchNorm1d)."""
    shapes = {"conv1.weight": (64, 3, 3, 3), **bn("bn1", 64), "prelu.weight": (64,)}
    for stage, (n, cin, c) in enumerate(zip(blocks, (64,) + WIDTHS[:-1], WIDTHS, strict=True)):
        for j in range(n):
            p, cin = f"layer{stage + 1}.{j}", cin if j == 0 else c
            shapes |= {**bn(f"{p}.bn1", cin), f"{p}.conv1.weight": (c, cin, 3, 3), **bn(f"{p}.bn2", c)}
            shapes |= {f"{p}.prelu.weight": (c,), f"{p}.conv2.weight": (c, c, 3, 3), **bn(f"{p}.bn3", c)}
            if j == 0:
                shapes |= {f"{p}.downsample.0.weight": (c, cin, 1, 1), **bn(f"{p}.downsample.1", c)}
    shapes |= {**bn("bn2", 512), "fc.weight": (dim, 512 * grid * grid), "fc.bias": (dim,), **bn("features", dim)}
    return shapes


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_counts_and_keys_are_insightface_s(variant):
    """Full size (112 x 112, dim 512) on the meta device: the backbone's state-dict keys and shapes are the
    published file's, its parameter count insightface's, and the encoder adds proj (512 -> dim) and pos."""
    with torch.device("meta"):
        enc = encoders.build("torch", "iresnet", variant=variant, dim=512, image_size=112)
    state = enc.backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == published_shapes(VARIANTS[variant])
    assert sum(p.numel() for p in enc.backbone.parameters()) == PUBLISHED[variant]
    assert sum(p.numel() for p in enc.parameters()) == PUBLISHED[variant] + 512 * 512 + 512 + 49 * 512
    assert [k for k, p in enc.named_parameters() if not p.requires_grad] == ["backbone.features.weight"]


def test_other_image_sizes_size_the_linear_layer_and_the_tokens():
    with torch.device("meta"):
        enc = encoders.build("torch", "iresnet", variant="iresnet18", dim=64, image_size=64)
    assert enc.backbone.fc.weight.shape == (64, 512 * 4 * 4) and enc.pos.shape == (16, 64)
    with pytest.raises(ValueError, match="divisible by 16"):
        encoders.build("torch", "iresnet", variant="iresnet18", dim=64, image_size=100)
    with pytest.raises(ValueError, match="iresnet18"):
        encoders.build("torch", "iresnet", variant="iresnet34", dim=64, image_size=112)


def test_adapter_strips_a_data_parallel_prefix_and_changes_nothing_else():
    state = {"conv1.weight": np.zeros((64, 3, 3, 3)), "fc.bias": np.ones(512)}
    assert checkpoint.adapt(state, {}) == (state, [])
    adapted, notes = checkpoint.adapt({f"module.{k}": v for k, v in state.items()}, {})
    assert adapted.keys() == state.keys() and len(notes) == 1 and "module." in notes[0]


def tame(module: torch.nn.Module) -> None:
    """Convolutions N(0, (0.5 / sqrt(fan_in))^2) and random BatchNorm statistics: in eval mode, insightface's N(0, 0.1)
    weights with fresh statistics (mean 0, variance 1) grow the activations to ~1e7 through the residual sums."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, 0.0, 0.5 / math.sqrt(m.weight[0].numel()))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            for tensor, low, high in ((m.bias, -1, 1), (m.running_mean, -1, 1), (m.running_var, 0.5, 2)):
                tensor.data.uniform_(low, high)


def test_full_size_forward_loads_a_saved_file(tmp_path):
    """iresnet18 at 112 x 112 (the one full-size forward): a backbone saved as insightface saves it (here from a
    DistributedDataParallel wrapper) loads into another encoder (research/torch/weights.py: read, adapt, check,
    load) and gives the same outputs; pooled is the backbone's embedding of the face normalised as insightface
    does."""
    torch.manual_seed(0)
    source = encoders.build("torch", "iresnet", variant="iresnet18", dim=512, image_size=112)
    tame(source)
    torch.save({f"module.{k}": v for k, v in source.backbone.state_dict().items()}, tmp_path / "backbone.pth")
    enc = encoders.build("torch", "iresnet", variant="iresnet18", dim=512, image_size=112)
    assert load_backbone(enc, "iresnet", tmp_path / "backbone.pth") == [
        "stripped the DistributedDataParallel prefix 'module.' from every key"
    ]
    enc.proj.load_state_dict(source.proj.state_dict())
    enc.pos.data.copy_(source.pos)
    face = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = enc.eval()({"face": face})
        expected = source.eval()({"face": face})
        embedding = source.backbone(2 * face - 1)
    assert out.tokens.shape == (2, 1 + 49, 512) and out.mask.shape == (2, 50) and out.mask.all()
    for x, y in ((out.tokens, expected.tokens), (out.pooled, expected.pooled), (out.pooled, embedding)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5 * float(y.abs().max()))
    with torch.device("meta"):  # another embedding size: the loader names the first layer that does not fit
        other = encoders.build("torch", "iresnet", variant="iresnet18", dim=128, image_size=112)
    with pytest.raises(CheckpointError, match=r"fc\.weight has shape \(512, 25088\) where .* has \(128, 25088\)"):
        load_backbone(other, "iresnet", tmp_path / "backbone.pth")


def test_training_reaches_every_parameter_but_the_fixed_scale():
    """Train mode (batch statistics, features' BatchNorm1d included), 32 x 32 faces: a loss on tokens and pooled
    gives every parameter a nonzero gradient, except the features scale, which stays fixed at 1."""
    torch.manual_seed(0)
    enc = encoders.build("torch", "iresnet", variant="iresnet18", dim=16, image_size=32).train()
    out = enc({"face": torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))})
    (out.tokens.square().mean() + out.pooled.square().mean()).backward()
    no_grad = [k for k, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == ["backbone.features.weight"] and (enc.backbone.features.weight == 1).all()
