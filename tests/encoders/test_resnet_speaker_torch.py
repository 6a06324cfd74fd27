"""WeSpeaker's ResNet34 (encoders/torch/resnet_speaker.py): the published size, the published file's keys and
shapes, loading such a file, and independence from padding (at full size: the one full-size forward).

WeSpeaker cannot be installed here and its avg_model.pt files could not be downloaded: the keys and shapes below
are derived from wespeaker/models/resnet.py (ResNet34(feat_dim=80, embed_dim=256), pooling TSTP, two_emb_layer
False; github.com/wenet-e2e/wespeaker, commit dfa7419) and wespeaker/bin/train.py + utils/checkpoint.py for the
saved file (the model's state dict, without a DataParallel prefix, with the training classifier `projection.*`).
"""

import torch

from encoders.torch.resnet_speaker import ResnetSpeaker
from research.torch.weights import load_backbone
from tests.encoders.batchnorm_torch import randomise_batchnorm

RATE = 16000
# ResNet34-TSTP-emb256: 6.63M parameters, WeSpeaker's pretrained-model tables (examples/voxceleb/v2/README.md,
# examples/cnceleb/v2/README.md): the backbone with its embedding layer seg_1.
PUBLISHED = 6.63e6


def batchnorm(name: str, width: int) -> dict[str, tuple[int, ...]]:
    stats = {f"{name}.{leaf}": (width,) for leaf in ("weight", "bias", "running_mean", "running_var")}
    return stats | {f"{name}.num_batches_tracked": ()}


def published_keys() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of WeSpeaker's ResNet34-TSTP-emb256 avg_model.pt (fbank80 input)."""
    keys = {"conv1.weight": (32, 1, 3, 3)} | batchnorm("bn1", 32)
    cin = 32
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (32, 64, 128, 256), strict=True), 1):
        for i in range(blocks):
            block = f"layer{stage}.{i}"
            keys |= {f"{block}.conv1.weight": (width, cin, 3, 3)} | batchnorm(f"{block}.bn1", width)
            keys |= {f"{block}.conv2.weight": (width, width, 3, 3)} | batchnorm(f"{block}.bn2", width)
            if cin != width:  # the first block of layer2..layer4 (stride 2) projects its shortcut
                keys |= {f"{block}.shortcut.0.weight": (width, cin, 1, 1)} | batchnorm(f"{block}.shortcut.1", width)
            cin = width
    keys |= {"seg_1.weight": (256, 2 * 256 * 10), "seg_1.bias": (256,)}  # TSTP: mean and std of 256 x 80/8
    # The ArcMargin class centres: one per (speaker, speed perturbation) in the VoxCeleb recipe; recipe-dependent.
    return keys | {"projection.weight": (5994 * 3, 256)}


def test_published_size_and_keys():
    with torch.device("meta"):
        enc = ResnetSpeaker("resnet34_speaker", dim=256, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    count = sum(p.numel() for p in enc.backbone.parameters())
    assert abs(count / PUBLISHED - 1) < 0.005, count  # 6634336
    expected = {k: v for k, v in published_keys().items() if not k.startswith("projection.")}
    assert len(expected) == 218  # the entries of WeSpeaker's ResNet34 state dict
    assert {k: tuple(v.shape) for k, v in enc.backbone.state_dict().items()} == expected


def test_a_wespeaker_file_loads_without_its_classifier(tmp_path):
    torch.manual_seed(0)
    enc = ResnetSpeaker("resnet_speaker_test", dim=32, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    torch.save(enc.backbone.state_dict() | {"projection.weight": torch.randn(10, 32)}, tmp_path / "avg_model.pt")
    loaded = ResnetSpeaker("resnet_speaker_test", dim=32, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    notes = load_backbone(loaded, "resnet_speaker", tmp_path / "avg_model.pt")
    assert notes == ["dropped WeSpeaker's training classifier projection.weight"]
    for key, value in enc.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_valid_outputs_do_not_depend_on_padding_at_full_size():
    """Eval mode: a padded utterance gives the tokens and embedding it gives alone (80 ms tokens: ceil(T / 8))."""
    torch.manual_seed(0)
    enc = ResnetSpeaker("resnet34_speaker", dim=256, sample_rate=RATE, frontend="fbank80", spec_augment=False)
    randomise_batchnorm(enc)
    enc.eval()
    lengths = torch.tensor([RATE, 9000])  # 98 and 55 frames -> 13 and 7 tokens
    g = torch.Generator().manual_seed(0)
    wave = torch.where(torch.arange(RATE) < lengths[:, None], 0.1 * torch.randn(2, RATE, generator=g), 0.0)
    with torch.no_grad():
        out = enc(dict(voice=wave, voice_len=lengths))
        alone = enc(dict(voice=wave[1:, :9000], voice_len=lengths[1:]))
    assert out.tokens.shape == (2, 1 + 13, 256) and out.mask.sum(1).tolist() == [14, 8]
    torch.testing.assert_close(out.tokens[1, :8], alone.tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.pooled[1], alone.pooled[0], atol=1e-5, rtol=1e-5)
