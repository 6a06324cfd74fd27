"""Whole-utterance evaluation in both backends (eval.voice_seconds = 0): on batches of voices of several lengths,
padded to four buckets, jax's predict gives torch's embeddings (weights converted), the padding changes no
embedding (one voice alone = the same voice in a longer batch), and jax compiles one forward pass per bucket."""

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx

from encoders.jax.convert import to_nnx
from research.data.loader import load
from research.jax import predict as jax_predict
from research.jax.distributed import make_mesh
from research.jax.model import build_model as build_jax
from research.predictions import eval_batches
from research.torch import predict as torch_predict
from research.torch.model import build_model as build_torch


@pytest.mark.parametrize("voice", ["voice_ecapa", "voice_vit"])  # convolutions and attention, both masked
def test_jax_embeds_whole_voices_as_torch(tiny, voice):
    cfg = tiny("--fusion=late", "--modalities=voice", f"--model.voice={voice}", "--data.batch_size=2")
    splits = load(cfg.data)
    test = splits.test
    lengths = np.random.default_rng(0).permutation(np.linspace(3000, 40000, len(test)).astype(int))  # 0.2 .. 2.5 s
    test = dataclasses.replace(test, voice=[np.resize(v, n) for v, n in zip(test.voice, lengths, strict=True)])
    classes = len(splits.classes["identity"])
    torch.manual_seed(0)
    tmodel = build_torch(cfg, classes, splits.vocab_size, None).eval()
    jmodel = build_jax(cfg, classes, splits.vocab_size, None, rngs=nnx.Rngs(0))
    to_nnx({k: v.numpy() for k, v in tmodel.state_dict().items()}, jmodel)

    cpu = torch.device("cpu")
    before = jax_predict.forward._cache_size()
    expected = torch_predict.predict(tmodel, test, cfg, cpu)
    got = jax_predict.predict(jmodel, test, cfg, make_mesh())
    shapes = {b["voice"].shape[1] for b in test.batches(2, **eval_batches(cfg))}
    assert len(shapes) == 4  # 1, 1.5, 2 and 3 s
    assert jax_predict.forward._cache_size() - before == len(shapes)  # one compilation per bucket
    for key in ("embedding", "voice_embedding", "log_probs"):
        np.testing.assert_allclose(got[key], expected[key], atol=2e-5, err_msg=key)
    np.testing.assert_array_equal(got["subject"], test.labels("subject"))

    cfg.data.batch_size = 1  # each voice alone, padded to its own bucket: the same embeddings
    alone = torch_predict.predict(tmodel, test, cfg, cpu)
    np.testing.assert_allclose(alone["voice_embedding"], expected["voice_embedding"], atol=1e-5)
