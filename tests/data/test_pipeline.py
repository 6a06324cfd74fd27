"""The input pipeline: the same batches from files, workers, the in-memory cache and packed shards; the
order a function of (seed, epoch); disjoint rank shards; exact mid-epoch resume; bad files in workers.

Worker runs start spawned processes (several seconds each here), so few of them, on the tiny dataset."""

import importlib.util
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from research.data import checked, loader, pack
from research.data.manifest import DataError

TRAIN = {"shuffle": True, "seed": 1, "epoch": 2, "train": True}
BATCH = 5


@pytest.fixture(scope="module")
def cached(tiny_source, data_config):
    return loader.load(data_config(tiny_source / "manifest.csv"))


@pytest.fixture(scope="module")
def streamed(tiny_source, data_config):
    return loader.load(data_config(tiny_source / "manifest.csv", cache=False))


@pytest.fixture(scope="module")
def packed(tiny_source, data_config, tmp_path_factory):
    """The tiny dataset packed by `prepare.py pack` into shards of 16 samples, then loaded."""
    spec = importlib.util.spec_from_file_location("prepare", Path(__file__).parents[2] / "experiments/prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    out = tmp_path_factory.mktemp("packed")
    args = ["pack", str(tiny_source / "manifest.csv"), "--out", str(out), "--image-size", "16", "--per-shard", "16"]
    assert prepare.main(args) == 0
    return out, loader.load(data_config(out / "manifest.csv"))


def epoch(data, **kw) -> list[dict]:
    with data.batches(BATCH, **(TRAIN | kw)) as it:
        return list(it)


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)
        for key in x:
            assert x[key].dtype == y[key].dtype, key
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def fingerprints(data: loader.SampleSet) -> dict[bytes, int]:
    """A sample's face, first S voice samples and token ids -> its index, from the decoded arrays."""
    keys = {}
    for i in range(len(data)):
        voice = np.zeros(data.voice_samples, np.float32)
        clip = data.voice[i][: data.voice_samples]
        voice[: len(clip)] = clip
        keys[data.face[i].tobytes() + voice.tobytes() + data.text_ids[i].tobytes()] = i
    assert len(keys) == len(data), "fingerprints must tell the samples apart"
    return keys


def order_of(batches: list[dict], keys: dict[bytes, int]) -> list[int]:
    """The sample indices an epoch of eval-cropped batches went through, in order."""
    found = []
    for b in batches:
        faces = np.round(b["face"] * 255).astype(np.uint8)
        for j in range(len(faces)):
            found.append(keys[faces[j].tobytes() + b["voice"][j].tobytes() + b["text_ids"][j].tobytes()])
    return found


@pytest.fixture(scope="module")
def reference(cached) -> list[dict]:
    """An epoch of training batches from the in-memory cache (files decoded by the loader, all at once)."""
    return epoch(cached.train)


@contextmanager
def workers(data: loader.SampleSet, count: int):
    data.workers = count
    try:
        yield data
    finally:
        data.workers = 0


def test_files_decoded_on_read_give_the_batches_of_the_cache(streamed, reference):
    assert sum(len(b["face"]) for b in reference) == len(streamed.train)
    assert_same(epoch(streamed.train), reference)


@pytest.mark.parametrize("count", [0, 1])
def test_batches_are_the_same_with_workers_and_get_state_resumes_mid_epoch(streamed, reference, count):
    with workers(streamed.train, count) as data:
        with data.batches(BATCH, **TRAIN) as it:
            head = [next(it), next(it), next(it)]
            state = json.loads(json.dumps(it.get_state()))  # as a checkpoint's JSON keeps it
            rest = list(it)
        with data.batches(BATCH, **TRAIN) as it:
            it.set_state(state)
            resumed = list(it)
    assert_same(head + rest, reference)
    assert_same(head + resumed, reference)


@pytest.mark.parametrize("count", [2, 4])
def test_more_workers_give_the_same_batches(streamed, reference, count):
    with workers(streamed.train, count) as data:
        assert_same(epoch(data), reference)


def test_sample_order_is_a_function_of_seed_and_epoch(cached):
    keys = fingerprints(cached.train)
    orders = {
        (s, e): order_of(epoch(cached.train, seed=s, epoch=e, train=False), keys) for s, e in [(0, 0), (0, 1), (1, 0)]
    }
    for found in orders.values():
        assert sorted(found) == list(range(len(cached.train)))
    assert order_of(epoch(cached.train, seed=0, epoch=1, train=False), keys) == orders[0, 1]
    assert orders[0, 0] != orders[0, 1] and orders[0, 0] != orders[1, 0] and orders[0, 1] != orders[1, 0]
    assert order_of(epoch(cached.train, shuffle=False, train=False), keys) == list(range(len(cached.train)))


def test_two_ranks_read_disjoint_halves_of_each_global_batch(cached):
    keys = fingerprints(cached.train)
    whole = list(cached.train.batches(2 * BATCH, **(TRAIN | {"train": False})))
    ranks = [list(cached.train.batches(BATCH, **(TRAIN | {"train": False, "rank": r, "world": 2}))) for r in (0, 1)]
    seen = [order_of(r, keys) for r in ranks]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(len(cached.train)))
    for k, batch in enumerate(whole):  # rank r's k-th batch is its part of global batch k
        parts = [set(order_of([r[k]], keys)) for r in ranks if k < len(r)]
        assert set(order_of([batch], keys)) == set().union(*parts)


def damaged_face(tiny: Path) -> Path:
    """Overwrite the first training sample's face with garbage; return its path."""
    from research.data import manifest

    row = next(r for r in manifest.read(tiny / "manifest.csv") if r.split == "train" and r.face)
    (tiny / row.face).write_bytes(b"not an image")
    return tiny / row.face


def test_a_bad_file_in_a_worker_raises_the_data_error_naming_it(tiny, data_config):
    bad = damaged_face(tiny)
    splits = loader.load(data_config(tiny / "manifest.csv", cache=False, workers=1))
    with pytest.raises(DataError, match=f"unreadable face file {bad}.*manifest .*line"):
        epoch(splits.train)


def test_skip_mode_drops_and_counts_a_bad_file(tiny, data_config, caplog):
    bad = damaged_face(tiny)
    splits = loader.load(data_config(tiny / "manifest.csv", cache=False, on_error="skip"))
    with splits.train.batches(BATCH, **TRAIN) as it:
        batches = list(it)
        assert it.skipped == 1
    assert sum(len(b["face"]) for b in batches) == len(splits.train) - 1
    assert f"skipped 1 of {len(splits.train)} samples" in caplog.text and str(bad) in caplog.text


def test_packed_shards_give_the_same_batches_as_loose_files(cached, packed):
    out, splits = packed
    info = json.loads(pack.info_path(out / "manifest.csv").read_text())
    assert len(info["shards"]) == -(-sum(info["counts"]) // 16) > 1
    for split in ("train", "val", "test"):
        assert getattr(splits, split).ids == getattr(cached, split).ids
        assert_same(epoch(getattr(splits, split)), epoch(getattr(cached, split)))
    assert splits.classes == cached.classes


def test_packing_checks_every_sample(packed):
    """A packed manifest's samples all decoded when packed: a streamed run reads that from its check result."""
    out, _ = packed
    assert checked.problems(out / "manifest.csv", 16, 16000) == []
    assert checked.problems(out / "manifest.csv", 32, 16000) is None  # not checked at other sizes


def test_packed_shards_refuse_other_sizes(packed, data_config):
    out, _ = packed
    with pytest.raises(DataError, match="packed at image_size 16"):
        loader.load(data_config(out / "manifest.csv", image_size=32))
