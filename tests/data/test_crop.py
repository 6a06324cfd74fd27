"""Evaluation batches of whole voices (research/data/crop.py, pipeline.py): bucket lengths, longest-first order, every
voice whole and zero-padded, `index` naming each sample, predictions put back in sample order; eval.voice_seconds > 0
crops from the start exactly as before; training batches are unchanged."""

import dataclasses

import numpy as np
import pytest

from research.config import Config
from research.config_parse import apply_overrides
from research.data.crop import bucket
from research.data.loader import load
from research.predictions import Predictions, eval_batches

RATE = 16000


def test_buckets_are_one_and_a_half_or_two_times_a_power_of_two_seconds():
    assert [bucket(n, RATE) / RATE for n in (0, 1, 16000, 16001, 24000, 24001, 40000, 48001, 2_320_000)] == [
        1, 1, 1, 1.5, 1.5, 2, 3, 4, 192,
    ]  # fmt: skip
    for n in np.random.default_rng(0).integers(RATE + 1, 200 * RATE, 2000):
        assert n <= bucket(n, RATE) <= 1.5 * n  # never short, at most 50 % padding
    lengths = np.random.default_rng(1).integers(4 * RATE, 145 * RATE, 5000)  # VoxCeleb1's 4 s .. 145 s
    assert len({bucket(n, RATE) for n in lengths}) == 11  # 6, 8, 12, ..., 128, 192 s: about a dozen shapes


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    cfg = apply_overrides(Config(), [f"--data.root={tmp_path_factory.mktemp('data')}", "--data.voice_seconds=0.5"])
    cfg.data.synthetic.identities, cfg.data.synthetic.samples_per_identity = 8, 6
    data = load(cfg.data)
    lengths = [3000, 40000, 17000, 8000, 30000, 12000, 26000, 5000, 39000, 16000, 9000, 20000]  # several buckets
    voices = [np.resize(v, lengths[k % len(lengths)]) for k, v in enumerate(data.test.voice)]
    return cfg, dataclasses.replace(data.test, voice=voices)


def read(data, **kw) -> list[dict]:
    return list(data.batches(4, shuffle=False, seed=0, epoch=0, train=False, **kw))


def test_whole_voices_come_longest_first_padded_to_their_bucket(splits):
    _, data = splits
    batches = read(data, voice_samples=0)
    index = np.concatenate([b["index"] for b in batches])
    lengths = np.array([len(v) for v in data.voice])
    assert sorted(index) == list(range(len(data)))
    assert list(lengths[index]) == sorted(lengths, reverse=True)
    for b in batches:
        assert b["voice"].shape[1] == bucket(b["voice_len"].max(), RATE)
        for row, n, i in zip(b["voice"], b["voice_len"], b["index"], strict=True):
            assert n == len(data.voice[i])
            np.testing.assert_array_equal(row[:n], data.voice[i])
            assert not row[n:].any()
        assert (b["subject"] == data.labels("subject")[b["index"]]).all()


def test_a_shard_is_sorted_within_itself(splits):
    _, data = splits
    index = np.concatenate([b["index"] for b in read(data, voice_samples=0, rank=1, world=2)])
    assert sorted(index) == list(range(1, len(data), 2))  # rank 1's samples, as pipeline.order gives them


def test_predictions_come_back_in_sample_order(splits):
    _, data = splits
    predictions = Predictions()
    for b in read(data, voice_samples=0):
        predictions.add(b, 0.0, {"embedding": b["voice_len"][:, None].astype(np.float32)})
    preds = predictions.arrays()
    assert "index" not in preds
    np.testing.assert_array_equal(preds["embedding"][:, 0], [len(v) for v in data.voice])
    np.testing.assert_array_equal(preds["subject"], data.labels("subject"))


def test_eval_voice_seconds_crops_from_the_start_as_before(splits):
    cfg, data = splits
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, voice_seconds=cfg.data.voice_seconds))
    kw = eval_batches(cfg)
    assert kw["voice_samples"] == data.voice_samples == 8000
    cropped, before = read(data, voice_samples=kw["voice_samples"]), read(data)
    for a, b in zip(cropped, before, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert eval_batches(Config())["voice_samples"] == 0  # whole voices by default
    with pytest.raises(ValueError, match="eval.voice_seconds"):
        eval_batches(apply_overrides(Config(), ["--eval.voice_seconds=-1"]))


def test_training_batches_are_unchanged(splits):
    _, data = splits
    for b in data.batches(4, shuffle=True, seed=3, epoch=1, train=True):
        assert "index" not in b and b["voice"].shape == (len(b["target"]), 8000)
