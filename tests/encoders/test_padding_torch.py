"""Padding invariance: zeros after voice_len, or padded text positions, change no valid output (eval mode).

Valid outputs are pooled, the summary token tokens[:, 0] (== pooled) and the valid tokens after it.
"""

import pytest
import torch

import encoders

DIM = 16
VOICE = {
    "voice_ecapa": dict(dim=DIM, sample_rate=16000, spec_augment=True),
    "voice_vit": dict(dim=DIM, sample_rate=16000, layers=2, heads=2, dropout=0.1, spec_augment=True),
}


def padded_voices(lengths: list[int], total: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The same voices (sample i has lengths[i] samples) zero-padded to `total` samples."""
    g = torch.Generator().manual_seed(seed)
    wave = torch.zeros(len(lengths), total)
    for i, n in enumerate(lengths):
        wave[i, :n] = 0.1 * torch.randn(n, generator=g)
    return {"voice": wave, "voice_len": torch.tensor(lengths)}


def assert_same_valid_outputs(a: encoders.EncoderOutput, b: encoders.EncoderOutput) -> None:
    """Same pooled vectors and summary tokens (valid in both), same number of valid tokens after the
    summary, all leading, and the same values there."""
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=1e-5)
    assert a.mask[:, 0].all() and b.mask[:, 0].all()
    torch.testing.assert_close(a.tokens[:, 0], b.tokens[:, 0], atol=1e-5, rtol=1e-5)
    assert torch.equal(a.mask[:, 1:].sum(1), b.mask[:, 1:].sum(1))
    for i in range(a.mask.shape[0]):
        n = int(a.mask[i, 1:].sum())
        assert n > 0 and a.mask[i, 1 : 1 + n].all() and b.mask[i, 1 : 1 + n].all()
        torch.testing.assert_close(a.tokens[i, 1 : 1 + n], b.tokens[i, 1 : 1 + n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", VOICE)
def test_voice_zero_padding_changes_no_valid_output(name):
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **VOICE[name])
    enc.train()  # move the BatchNorm running statistics away from their initial identity
    for _ in range(2):
        enc(padded_voices([3000, 3000], 3000, seed=5))
    enc.eval()
    lengths = [3000, 2200]
    with torch.no_grad():
        tight = enc(padded_voices(lengths, 3000))  # sample 0 is unpadded: its last window ends at the buffer
        loose = enc(padded_voices(lengths, 4800))
    assert_same_valid_outputs(tight, loose)


@pytest.mark.parametrize("name", VOICE)
def test_voice_samples_do_not_see_each_other(name):
    """A sample's output does not depend on which other samples share its batch (eval mode)."""
    torch.manual_seed(0)
    enc = encoders.build("torch", name, **VOICE[name]).eval()
    batch = padded_voices([3000, 2200], 3000)
    with torch.no_grad():
        both = enc(batch)
        alone = enc({"voice": batch["voice"][1:], "voice_len": batch["voice_len"][1:]})
    torch.testing.assert_close(both.pooled[1:], alone.pooled, atol=1e-5, rtol=1e-5)
    assert torch.equal(both.mask[1:], alone.mask)
    keep = alone.mask  # (1, 1 + N): the summary and the valid tokens
    torch.testing.assert_close(both.tokens[1:][keep], alone.tokens[keep], atol=1e-5, rtol=1e-5)


def test_text_padding_changes_no_valid_output():
    """Appending positions with mask False (and arbitrary ids) leaves pooled and the real tokens unchanged."""
    torch.manual_seed(0)
    enc = encoders.build("torch", "text_tiny", dim=DIM, vocab_size=50, max_len=12, layers=2, heads=2, dropout=0.1)
    enc.eval()
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.arange(6) < torch.tensor([[6], [3]])
    more_ids = torch.cat([ids, torch.randint(1, 50, (2, 4))], 1)
    more_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        short = enc({"text_ids": ids, "text_mask": mask})
        long = enc({"text_ids": more_ids, "text_mask": more_mask})
    assert_same_valid_outputs(short, long)
    # pooled is the mean of the real tokens' outputs tokens[i, 1 : 1 + n] (sample 1 has 3)
    for i, n in enumerate([6, 3]):
        torch.testing.assert_close(short.pooled[i], short.tokens[i, 1 : 1 + n].mean(0))
