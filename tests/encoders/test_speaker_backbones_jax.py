"""The jax speaker backbones (WeSpeaker's ECAPA-TDNN and ResNet34) against their torch twins: equal parameter counts
at the published sizes, equal outputs on converted weights with padded voices (eval), equal BatchNorm statistics
after a train-mode step, and a published (WeSpeaker-format) file loading into the jax backbone through the adapter
and the converter."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from encoders.jax.convert import to_nnx, to_torch
from encoders.jax.ecapa import Ecapa
from encoders.jax.resnet_speaker import ResnetSpeaker
from encoders.torch import ecapa as torch_ecapa
from encoders.torch import resnet_speaker as torch_resnet_speaker
from research.jax.weights import load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

RATE, DIM, S = 16000, 32, 8000
LENGTHS = [S, 5000, 2000, 300]  # unpadded, padded, shorter than one 25 ms window (no frame)
# Parameters of WeSpeaker's models, from the pretrained-model tables of its README files
# (examples/voxceleb/v2/README.md, examples/cnceleb/v2/README.md): the backbone with its embedding layer
# (ECAPA's linear -> 192, ResNet34-TSTP-emb256's seg_1 -> 256).
PUBLISHED = {"ecapa_c512": 6.19e6, "ecapa_c1024": 14.65e6, "resnet34_speaker": 6.63e6}
# module -> (jax class, torch class, its test size, its embedding size as published, its embedding layer)
FAMILIES = {
    "ecapa": (Ecapa, torch_ecapa.Ecapa, "ecapa_test", 192, "linear"),
    "resnet_speaker": (ResnetSpeaker, torch_resnet_speaker.ResnetSpeaker, "resnet_speaker_test", 256, "seg_1"),
}


def count(state) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_parameter_counts_equal_torchs_and_the_published_ones(variant):
    module = "resnet_speaker" if variant == "resnet34_speaker" else "ecapa"
    jax_class, torch_class, _, dim, _ = FAMILIES[module]
    kw = dict(dim=dim, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    enc = nnx.eval_shape(lambda: jax_class(variant, **kw, rngs=nnx.Rngs(0)))
    with torch.device("meta"):
        twin = torch_class(variant, **kw)
    assert count(nnx.state(enc, nnx.Param)) == sum(p.numel() for p in twin.parameters())
    backbone = count(nnx.state(enc.backbone, nnx.Param))
    assert abs(backbone / PUBLISHED[variant] - 1) < 0.005, backbone


def voices() -> dict[str, np.ndarray]:
    """Padded tones in noise, in [-1, 1]. (On white noise alone the twins' fbanks differ by up to 5e-5 in the
    lowest mel bands, which hold ~1e-3 of its power after pre-emphasis: float32 FFTs, see test_frontend_jax.py.)"""
    g = np.random.default_rng(0)
    t = np.arange(S) / RATE
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * g.standard_normal((len(LENGTHS), S))
    lengths = np.array(LENGTHS, np.int32)
    return {"voice": np.where(np.arange(S) < lengths[:, None], wave, 0.0).astype(np.float32), "voice_len": lengths}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request) -> tuple[torch.nn.Module, nnx.Module]:
    """A torch encoder with random BatchNorm statistics and its jax twin holding the same weights."""
    torch.manual_seed(0)
    kw = dict(dim=DIM, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    jax_class, torch_class, test_variant, _, _ = FAMILIES[request.param]
    twin = torch_class(test_variant, **kw)
    randomise_batchnorm(twin)
    # Built abstract (nnx.eval_shape: no random initialisers, each of which compiles anew per shape) and filled by
    # the conversion; only the unused SpecAugment RNG stream stays abstract.
    enc = nnx.eval_shape(lambda: jax_class(test_variant, **kw, rngs=nnx.Rngs(1)))
    to_nnx({k: v.numpy() for k, v in twin.state_dict().items()}, enc)
    return request.param, twin, enc


def compare(got, expected, tol: float = 1e-5) -> None:
    assert np.array_equal(np.asarray(got.mask), expected.mask.numpy())
    for name in ("tokens", "pooled"):
        value, ref = np.asarray(getattr(got, name)), getattr(expected, name).detach().numpy()
        np.testing.assert_allclose(value / np.abs(ref).max(), ref / np.abs(ref).max(), rtol=tol, atol=tol, err_msg=name)


def test_eval_outputs_equal_torchs_with_padded_voices(pair):
    _, twin, enc = pair
    batch = voices()
    twin.eval(), enc.eval()
    with torch.no_grad():
        expected = twin({k: torch.from_numpy(v) for k, v in batch.items()})
    compare(enc(batch), expected)


def test_a_train_step_updates_batchnorm_as_torch_does(pair):
    _, twin, enc = pair
    batch = voices()
    twin.train(), enc.train()
    with torch.no_grad():
        expected = twin({k: torch.from_numpy(v) for k, v in batch.items()})
    compare(enc(batch), expected, tol=5e-5)  # normalising by batch statistics amplifies float32 rounding
    ours, theirs = to_torch(enc), twin.state_dict()
    for key in (k for k in theirs if "running" in k or "num_batches" in k):
        np.testing.assert_allclose(ours[key], theirs[key].numpy(), rtol=1e-5, atol=1e-5, err_msg=key)


def test_a_published_file_loads_into_the_jax_backbone(tmp_path, pair):
    module, twin, enc = pair
    saved = twin.backbone.state_dict() | {"projection.weight": torch.randn(10, DIM)}
    torch.save(saved, tmp_path / "avg_model.pt")
    assert load_backbone(enc, module, tmp_path / "avg_model.pt") == [
        "dropped WeSpeaker's training classifier projection.weight"
    ]
    layer = FAMILIES[module][4]
    got, want = getattr(enc.backbone, layer).kernel[...], getattr(twin.backbone, layer).weight
    assert np.array_equal(np.asarray(got), want.detach().numpy().T)
