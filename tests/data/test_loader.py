"""The loader: batch shapes and values against the files on disk, voice crops, batch order, labels, splits."""

import dataclasses

import numpy as np
import pytest
import soundfile
from PIL import Image

from research.config import MODALITIES
from research.data import loader, manifest
from research.data.manifest import AGE_BINS, DataError

EXPECTED = {
    "face": ((3, 16, 16), np.float32),
    "voice": ((4000,), np.float32),
    "voice_len": ((), np.int64),
    "text_ids": ((24,), np.int64),
    "text_mask": ((24,), np.bool_),
    "face_present": ((), np.bool_),
    "voice_present": ((), np.bool_),
    "text_present": ((), np.bool_),
    **{name: ((), np.int64) for name in ("identity", "age", "gender", "group", "subject", "target")},
}


@pytest.fixture(scope="module")
def splits(tiny_source, data_config):
    return loader.load(data_config(tiny_source / "manifest.csv", target="age"))


def all_batches(data, **kw):
    return list(data.batches(5, **{"shuffle": False, "seed": 0, "epoch": 0, "train": False, **kw}))


def test_batches_have_the_documented_keys_shapes_and_dtypes(splits):
    batches = all_batches(splits.train, shuffle=True, train=True)
    sizes = [len(b["face"]) for b in batches]
    assert sizes[:-1] == [5] * (len(sizes) - 1) and 0 < sizes[-1] <= 5 and sum(sizes) == len(splits.train)
    for b in batches:
        assert set(b) == set(EXPECTED)
        for key, (shape, dtype) in EXPECTED.items():
            assert b[key].shape == (len(b["face"]), *shape) and b[key].dtype == dtype, key
        assert 0.0 <= b["face"].min() and b["face"].max() <= 1.0
        assert np.abs(b["voice"]).max() <= 1.0


def test_arrays_match_the_files(splits, tiny_source):
    rows = {r.id: r for r in manifest.read(tiny_source / "manifest.csv")}
    batch = all_batches(splits.val)[0]
    for b, sample_id in enumerate(splits.val.ids[:5]):
        row = rows[sample_id]
        assert batch["face_present"][b] == bool(row.face)
        if row.face:
            pixels = np.asarray(Image.open(tiny_source / row.face)).transpose(2, 0, 1) / 255.0
            np.testing.assert_allclose(batch["face"][b], pixels, atol=1e-6)
        else:
            assert not batch["face"][b].any()
        if row.voice:  # eval crops the start, zero-padded to 4000 samples
            wave, _ = soundfile.read(tiny_source / row.voice, dtype="float32")
            n = min(len(wave), 4000)
            assert batch["voice_len"][b] == n
            np.testing.assert_array_equal(batch["voice"][b, :n], wave[:n])
            assert not batch["voice"][b, n:].any()
        else:
            assert batch["voice_len"][b] == 0 and not batch["voice"][b].any()
        assert not row.text or batch["text_mask"][b].sum() > 5
        assert row.text or not (batch["text_ids"][b].any() or batch["text_mask"][b].any())
        assert AGE_BINS[batch["age"][b]] == row.age == AGE_BINS[batch["target"][b]]
        assert splits.classes["group"][batch["group"][b]] == row.group
        assert splits.classes["subject"][batch["subject"][b]] == row.subject


def test_training_crops_are_random_windows_of_the_file_fixed_by_seed_and_epoch(splits):
    data = splits.train
    long = [i for i, v in enumerate(data.voice) if len(v) > 4000]
    assert len(long) >= 3
    crops = {}
    for epoch in (0, 1):
        batch = next(iter(data.batches(len(data), shuffle=False, seed=7, epoch=epoch, train=True)))
        starts = []
        for i in long:
            wave, crop = data.voice[i], batch["voice"][i]
            assert batch["voice_len"][i] == 4000
            found = [s for s in range(len(wave) - 3999) if np.array_equal(wave[s : s + 4000], crop)]
            assert found, "a training crop must be a window of the file"
            starts.append(found[0])
        crops[epoch] = starts
    assert crops[0] != crops[1] and len(set(crops[0])) > 1


def contents(batches, voice: bool = True) -> list[bytes]:
    """Each sample's face, text (and voice) bytes, batch after batch: what identifies a sample of the split."""
    keys = []
    for b in batches:
        parts = [b["face"], b["text_ids"], b["voice"]] if voice else [b["face"], b["text_ids"]]
        keys += [b"|".join(p[i].tobytes() for p in parts) for i in range(len(b["face"]))]
    return keys


def test_batch_order_is_a_function_of_seed_and_epoch(splits):
    """The order of the samples themselves (found by content, not by subject or crop), so a loader that
    ignored the seed or the epoch could not hide behind voice crops that depend on them."""
    index = {key: i for i, key in enumerate(contents(all_batches(splits.train)))}  # unshuffled: sample i
    n = len(splits.train)
    assert len(index) == n  # every sample is told apart by its content

    def order(seed, epoch, batch_size=5):
        batches = splits.train.batches(batch_size, shuffle=True, seed=seed, epoch=epoch, train=False)
        return [index[key] for key in contents(batches)]

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4) and order(0, 3) != order(1, 3)
    assert sorted(order(0, 3)) == list(range(n)) and order(0, 3) != list(range(n))
    assert order(0, 3) == order(0, 3, batch_size=7)  # independent of the batch size
    # Training batches (random voice crops) hold the same samples in the same order.
    train = splits.train.batches(5, shuffle=True, seed=0, epoch=3, train=True)
    same = splits.train.batches(5, shuffle=True, seed=0, epoch=3, train=False)
    assert contents(train, voice=False) == contents(same, voice=False)
    assert [s for b in train for s in b["subject"]] == [s for b in same for s in b["subject"]]


def test_missing_modalities_are_zeros_and_flagged(splits):
    present = np.stack([splits.train.present[m] for m in MODALITIES], 1)  # (N, 3)
    assert 0 < (~present).sum() and present.any(axis=1).all()
    assert not splits.train.face[~present[:, 0]].any()


def test_closed_split_classes_and_coverage(splits):
    assert splits.classes["identity"] == [f"p{i}" for i in range(8)] == splits.classes["subject"]
    assert splits.classes["age"] == list(AGE_BINS) and splits.classes["gender"] == ["female", "male"]
    assert splits.classes["group"] == ["g0", "g1"]
    for part in (splits.train, splits.val, splits.test):
        assert set(part.labels("identity")) == set(range(8))
        np.testing.assert_array_equal(part.labels("identity"), part.labels("subject"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (32, 8, 8)
    assert splits.skipped == 0 and splits.vocab_size == 30522


def test_open_split_identities_are_disjoint_and_unseen_ones_are_minus_one(tiny_source, data_config):
    splits = loader.load(data_config(tiny_source / "manifest.csv", split="open", target="identity"))
    seen = set(splits.train.labels("subject"))
    assert len(splits.classes["identity"]) == len(seen) == 4
    for part in (splits.val, splits.test):
        assert len(part) and (part.labels("identity") == -1).all() and (part.labels("target") == -1).all()
        assert not seen & set(part.labels("subject"))
    assert splits.classes["identity"] == [splits.classes["subject"][s] for s in sorted(seen)]


def test_open_split_needs_the_column(tiny, data_config):
    path = tiny / "manifest.csv"
    rows = [dataclasses.replace(r, open_split=None) for r in manifest.read(path)]
    manifest.write(path, rows)
    with pytest.raises(DataError, match=f"{path} has no open_split column"):
        loader.load(data_config(path, split="open"))


def test_jsonl_manifests_load_like_csv(tiny, data_config):
    manifest.write(tiny / "m.jsonl", manifest.read(tiny / "manifest.csv"))
    a = loader.load(data_config(tiny / "manifest.csv")).test
    b = loader.load(data_config(tiny / "m.jsonl")).test
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.face, b.face)
    np.testing.assert_array_equal(a.text_ids, b.text_ids)
