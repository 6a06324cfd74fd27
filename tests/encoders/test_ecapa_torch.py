"""WeSpeaker's ECAPA-TDNN (encoders/torch/ecapa.py): published sizes, the published file's keys, SpeechBrain's
ECAPA_TDNN through the adapter's rename table, and independence from padding.

WeSpeaker cannot be installed here and its avg_model.pt files could not be downloaded: their keys and shapes
below are derived from wespeaker/models/ecapa_tdnn.py and pooling_layers.py (github.com/wenet-e2e/wespeaker,
commit dfa7419), and from wespeaker/bin/train.py + utils/checkpoint.py for the saved file (the model's state dict,
without a DataParallel prefix, with the training classifier `projection.*` beside the speaker model).
"""

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.nnet.CNN import Conv1d as SpeechBrainConv1d

from encoders.torch.ecapa import Ecapa
from research.torch.weights import load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

RATE = 16000
# Parameters of WeSpeaker's models, from the pretrained-model tables of its README files
# (examples/voxceleb/v2/README.md, examples/cnceleb/v2/README.md): the backbone with its embedding layer.
PUBLISHED = {"ecapa_c512": 6.19e6, "ecapa_c1024": 14.65e6}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def published_keys(channels: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of WeSpeaker's ECAPA_TDNN_GLOB_c{channels}-ASTP-emb192 avg_model.pt (fbank80 input)."""
    C, w = channels, channels // 8  # Res2Net scale 8
    layers = {"layer1.conv": (C, 80, 5), "layer1.bn": (C,)}
    for i in (2, 3, 4):
        block = f"layer{i}.se_res2block"
        layers |= {f"{block}.0.conv": (C, C, 1), f"{block}.0.bn": (C,)}
        layers |= {f"{block}.1.convs.{j}": (w, w, 3) for j in range(7)} | {f"{block}.1.bns.{j}": (w,) for j in range(7)}
        layers |= {f"{block}.2.conv": (C, C, 1), f"{block}.2.bn": (C,)}
        layers |= {f"{block}.3.linear1": (128, C), f"{block}.3.linear2": (C, 128)}  # SE bottleneck 128
    layers |= {"conv": (1536, 3 * C, 1), "pool.linear1": (128, 3 * 1536, 1), "pool.linear2": (1536, 128, 1)}
    layers |= {"bn": (3072,), "linear": (192, 3072)}
    keys = {}
    for name, shape in layers.items():
        if name.endswith(("bn", *(f"bns.{j}" for j in range(7)))):
            keys |= {f"{name}.{leaf}": () if leaf == "num_batches_tracked" else shape for leaf in BN}
        else:
            keys |= {f"{name}.weight": shape, f"{name}.bias": shape[:1]}
    return keys | {
        "projection.weight": (5994 * 3, 192)
    }  # ArcMargin centres: one per (speaker, speed); recipe-dependent


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_published_sizes_and_keys(variant):
    with torch.device("meta"):
        enc = Ecapa(variant, dim=192, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    count = sum(p.numel() for p in enc.backbone.parameters())
    assert abs(count / PUBLISHED[variant] - 1) < 0.005, count  # 6190720 and 14657088
    published = published_keys(int(variant.removeprefix("ecapa_c")))
    assert {k: tuple(v.shape) for k, v in enc.backbone.state_dict().items()} == {
        k: v for k, v in published.items() if not k.startswith("projection.")
    }


def test_a_wespeaker_file_loads_without_its_classifier(tmp_path):
    torch.manual_seed(0)
    enc = Ecapa("ecapa_test", dim=32, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    saved = enc.backbone.state_dict() | {"projection.weight": torch.randn(10, 32)}
    torch.save(saved, tmp_path / "avg_model.pt")
    loaded = Ecapa("ecapa_test", dim=32, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    notes = load_backbone(loaded, "ecapa", tmp_path / "avg_model.pt")
    assert notes == ["dropped WeSpeaker's training classifier projection.weight"]
    for key, value in enc.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_speechbrain_ecapa_loads_and_its_frame_layers_agree(tmp_path):
    """SpeechBrain's ECAPA_TDNN at ecapa_c1024's configuration (the one full-size forward of this family).

    The designs agree up to the aggregation conv: layer1..layer4 and the aggregation conv's output equal
    SpeechBrain's within 1e-5 after the adapter (Res2Net groups rotated). SpeechBrain's convs pad by reflection;
    they are set to zero padding here (WeSpeaker's). After the aggregation the designs differ (SpeechBrain's extra
    BatchNorms, dropped by the adapter with a note, and its biased context std), so the embeddings cannot agree.
    """
    torch.manual_seed(0)
    ref = ECAPA_TDNN(80, lin_neurons=192, channels=[1024] * 4 + [1536], attention_channels=128, se_channels=128)
    randomise_batchnorm(ref)
    ref.eval()
    for m in ref.modules():
        if isinstance(m, SpeechBrainConv1d):
            m.padding_mode = "constant"  # zeros
    torch.save(ref.state_dict(), tmp_path / "embedding_model.ckpt")
    enc = Ecapa("ecapa_c1024", dim=192, sample_rate=RATE, frontend="fbank80", spec_augment=False).eval()
    notes = load_backbone(enc, "ecapa", tmp_path / "embedding_model.ckpt")  # strict: every key, every shape
    assert len(notes) == 3 and "mfa.norm" in notes[2] and "asp.tdnn.norm" in notes[1]

    expected = {}
    for name, module in [*((f"layer{i + 1}", ref.blocks[i]) for i in range(4)), ("conv", ref.mfa.conv)]:
        module.register_forward_hook(lambda _m, _i, out, name=name: expected.__setitem__(name, out))
    feats = torch.randn(1, 100, 80, generator=torch.Generator().manual_seed(1))  # 1 s of fbank80 frames
    keep = torch.ones(1, 1, 100, dtype=torch.bool)
    b = enc.backbone
    with torch.no_grad():
        ref(feats)
        got = {"layer1": b.layer1(feats.transpose(1, 2))}
        for i in (2, 3, 4):
            got[f"layer{i}"] = getattr(b, f"layer{i}")(got[f"layer{i - 1}"], keep)
        got["conv"] = b.conv(torch.cat([got["layer2"], got["layer3"], got["layer4"]], 1))
    for name, value in got.items():
        scale = expected[name].abs().max()
        torch.testing.assert_close(value / scale, expected[name] / scale, atol=1e-5, rtol=0, msg=name)


def test_valid_outputs_do_not_depend_on_padding():
    """Eval mode: each utterance of a padded batch gives the tokens and embedding it gives alone."""
    torch.manual_seed(0)
    enc = Ecapa("ecapa_test", dim=32, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    randomise_batchnorm(enc)
    enc.eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([8000, 5000, 2000])
    wave = torch.where(torch.arange(8000) < lengths[:, None], 0.1 * torch.randn(3, 8000, generator=g), 0.0)
    with torch.no_grad():
        out = enc(dict(voice=wave, voice_len=lengths))
        for i, n in enumerate(lengths.tolist()):
            alone = enc(dict(voice=wave[i : i + 1, :n], voice_len=lengths[i : i + 1]))
            frames = alone.tokens.shape[1]
            torch.testing.assert_close(out.tokens[i, :frames], alone.tokens[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.pooled[i], alone.pooled[0], atol=1e-5, rtol=1e-5)
            assert out.mask[i].sum() == frames and not out.mask[i, frames:].any()
