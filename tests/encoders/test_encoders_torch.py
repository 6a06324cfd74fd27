"""Every torch encoder: built by name, output shapes and dtypes, the summary token, gradients, bf16 autocast.

Every encoder returns its pooled summary as its first token: tokens (B, 1 + N, D) with tokens[:, 0] ==
pooled, mask (B, 1 + N) with mask[:, 0] == mask[:, 1:].any(1) (see blocks.summarised).
"""

import pytest
import torch

import encoders

B, IMAGE, SAMPLES, LEN, VOCAB, DIM = 3, 32, 4000, 7, 50, 16
FRAMES = (SAMPLES - 400) // 160 + 1  # 25 ms windows every 10 ms at 16 kHz, not centred: 23

SPECS = {
    "face_cnn": dict(dim=DIM, image_size=IMAGE),
    "face_vit": dict(dim=DIM, image_size=IMAGE, layers=2, heads=2, dropout=0.1),
    "voice_ecapa": dict(dim=DIM, sample_rate=16000, spec_augment=True),
    "voice_vit": dict(dim=DIM, sample_rate=16000, layers=2, heads=2, dropout=0.1, spec_augment=True),
    "text_tiny": dict(dim=DIM, vocab_size=VOCAB, max_len=LEN, layers=2, heads=2, dropout=0.1),
}
# Tokens per sample after the summary token: the CNN's 32/8 x 32/8 map, the ViT's 8 x 8 patches, 4-frame
# strips, text positions.
TOKENS = {"face_cnn": 16, "face_vit": 16, "voice_ecapa": FRAMES, "voice_vit": FRAMES // 4, "text_tiny": LEN}
# text_hf with the packaged all-MiniLM-L6-v2 (its test file checks it against transformers); ids < VOCAB
# are valid MiniLM ids.
TEXT_HF = dict(dim=DIM, path="minilm", freeze=True)


def make_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "face": torch.rand(B, 3, IMAGE, IMAGE, generator=g),
        "voice": 0.1 * torch.randn(B, SAMPLES, generator=g),
        "voice_len": torch.tensor([SAMPLES, 3000, 2000]),
        "text_ids": torch.randint(0, VOCAB, (B, LEN), generator=g),
        "text_mask": torch.arange(LEN) < torch.tensor([[LEN], [4], [1]]),
        "voice_present": torch.ones(B, dtype=torch.bool),
    }


def make_batch_with_missing() -> dict[str, torch.Tensor]:
    """make_batch with sample 1's voice and text missing (voice_len 0, all-False text_mask)."""
    batch = make_batch()
    batch["voice_len"][1] = 0
    batch["text_mask"][1] = False
    return batch


def random_loss(out: encoders.EncoderOutput, parts: tuple[str, ...] = ("pooled", "tokens")) -> torch.Tensor:
    """A loss on the named outputs with random weights, so no parameter's gradient cancels by symmetry."""
    g = torch.Generator().manual_seed(1)
    xs = [getattr(out, part).float() for part in parts]
    return sum((x * torch.randn(x.shape, generator=g)).sum() for x in xs)


@pytest.mark.parametrize("name", SPECS)
def test_registry_builds_the_class_named_after_the_file(name):
    enc = encoders.build("torch", name, **SPECS[name])
    assert type(enc).__name__ == "".join(p.capitalize() for p in name.split("_"))
    assert type(enc).__module__ == f"encoders.torch.{name}"


@pytest.mark.parametrize("name", SPECS)
def test_output_shapes_and_dtypes(name):
    torch.manual_seed(0)
    out = encoders.build("torch", name, **SPECS[name]).eval()(make_batch())
    assert isinstance(out, encoders.EncoderOutput)
    n = 1 + TOKENS[name]  # the summary token, then the encoder's own tokens
    assert out.tokens.shape == (B, n, DIM) and out.tokens.dtype == torch.float32
    assert out.mask.shape == (B, n) and out.mask.dtype == torch.bool
    assert out.pooled.shape == (B, DIM) and out.pooled.dtype == torch.float32
    assert out.tokens.isfinite().all() and out.pooled.isfinite().all()


def prefix_mask(lengths: list[int], n: int) -> torch.Tensor:
    """(len(lengths), n) bool, True at the first lengths[i] positions of row i."""
    return torch.arange(n) < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("name", SPECS)
def test_masks_follow_the_inputs(name):
    """mask[:, 1:] is the encoder's own token mask; the summary mask[:, 0] is True (every sample has some)."""
    batch = make_batch()
    mask = encoders.build("torch", name, **SPECS[name]).eval()(batch).mask
    # Valid frames: whole 400-sample windows inside voice_len. For 3000 samples the last one starts at
    # 2560 (ends at 2960; the next would end at 3120): frames 0..16, so 17. For 2000: 0..10, so 11.
    # A strip is valid when its 4 frames all are: 23 // 4, 17 // 4, 11 // 4.
    expected = {
        "face_cnn": torch.ones(B, TOKENS["face_cnn"], dtype=torch.bool),
        "face_vit": torch.ones(B, TOKENS["face_vit"], dtype=torch.bool),
        "voice_ecapa": prefix_mask([23, 17, 11], FRAMES),
        "voice_vit": prefix_mask([5, 4, 2], FRAMES // 4),
        "text_tiny": batch["text_mask"],
    }[name]
    assert torch.equal(mask[:, 1:], expected)
    assert mask[:, 0].all()


@pytest.mark.parametrize("name", [*SPECS, "text_hf"])
def test_first_token_is_the_pooled_summary(name):
    """tokens[:, 0] is pooled, and mask[:, 0] is True exactly where some token is (here not for the
    missing voice / text of sample 1), in training and in eval mode."""
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **(TEXT_HF if name == "text_hf" else SPECS[name]))
    for mode in (True, False):
        with torch.no_grad():
            out = enc.train(mode)(make_batch_with_missing())
        assert torch.equal(out.tokens[:, 0], out.pooled)
        assert torch.equal(out.mask[:, 0], out.mask[:, 1:].any(1))
        expected = [True, name.startswith("face"), True]  # only the faces of sample 1 are there
        assert out.mask[:, 0].tolist() == expected


@pytest.mark.parametrize("parts", [("tokens",), ("pooled",)], ids=["tokens", "pooled"])
@pytest.mark.parametrize("name", SPECS)
def test_gradient_reaches_every_parameter(name, parts):
    """Whether a fusion reads only the tokens (early, cross-attention, stacking) or only pooled (late,
    gated), every encoder parameter learns: tokens[:, 0] is pooled, and pooled is computed from the tokens."""
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **SPECS[name]).train()
    random_loss(enc(make_batch()), parts).backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} gets no gradient from {parts}"


@pytest.mark.parametrize("name", SPECS)
def test_bf16_autocast_forward_and_backward(name):
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **SPECS[name]).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(make_batch())
    assert out.tokens.shape == (B, 1 + TOKENS[name], DIM) and out.pooled.shape == (B, DIM)
    assert out.tokens.dtype in (torch.bfloat16, torch.float32)
    assert torch.equal(out.tokens[:, 0], out.pooled.to(out.tokens.dtype))
    random_loss(out).backward()
    assert all(p.grad.isfinite().all() for p in enc.parameters())


@pytest.mark.parametrize("name", ["voice_ecapa", "voice_vit", "text_tiny"])
def test_a_sample_with_nothing_valid_stays_finite(name):
    """A missing modality arrives as zeros with voice_len 0 / an all-False text mask: no NaN anywhere, and
    every token of that sample is masked, the summary token included."""
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **SPECS[name]).train()
    out = enc(make_batch_with_missing())
    assert not out.mask[1].any()  # mask[1, 0], the summary, included
    assert out.mask[[0, 2], 0].all()
    assert out.tokens.isfinite().all() and out.pooled.isfinite().all()
    random_loss(out).backward()
    assert all(p.grad.isfinite().all() for p in enc.parameters())


def test_face_vit_patch_size_follows_the_image():
    """P = min(8, image_size // 4): a 16-pixel face is cut into 4 x 4 patches of 4 pixels."""
    enc = encoders.build("torch", "face_vit", dim=DIM, image_size=16, layers=1, heads=2, dropout=0.0)
    out = enc.eval()({"face": torch.rand(2, 3, 16, 16)})
    assert out.tokens.shape == (2, 1 + 16, DIM)


def test_text_tiny_rejects_text_longer_than_max_len():
    enc = encoders.build("torch", "text_tiny", **SPECS["text_tiny"])
    with pytest.raises(ValueError, match="max_len"):
        enc({"text_ids": torch.zeros(1, LEN + 1, dtype=torch.long), "text_mask": torch.ones(1, LEN + 1)})
