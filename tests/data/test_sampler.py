"""The P x K sampler (research/data/sampler.py): every batch P identities x K distinct samples, a pure function
of (seed, epoch), rank shards that partition each global batch; through the input pipeline as data.sampler=pk."""

import numpy as np
import pytest

from research.config import Config, ConfigError
from research.config_parse import apply_overrides
from research.data import loader
from research.data.sampler import pk_order

# 7 identities: 0..4 with 3 to 6 samples, 5 with a single sample (fewer than K), 6 unknown (-1).
LABELS = np.array([0] * 6 + [1] * 3 + [2] * 4 + [3] * 5 + [4] * 3 + [5] + [-1] * 4)
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]
P, K, STEPS = 3, 2, 7


def check_batches(indices: np.ndarray, labels: np.ndarray, p: int, k: int) -> None:
    """The independent check: each run of p * k indices is p identities with k distinct samples each."""
    counts = np.bincount(labels[labels >= 0])
    for batch in indices.reshape(-1, p * k):
        assert len(set(batch.tolist())) == p * k, "a sample twice in one batch"
        ids, n = np.unique(labels[batch], return_counts=True)
        assert len(ids) == p and (n == k).all(), (labels[batch], p, k)
        assert (ids >= 0).all() and (counts[ids] >= k).all(), "an unknown identity or one with fewer than K samples"


def test_every_batch_holds_p_identities_of_k_distinct_samples():
    indices = pk_order(LABELS, P, K, STEPS, seed=0, epoch=1)
    assert indices.shape == (STEPS * P * K,)
    check_batches(indices, LABELS, P, K)
    assert 5 not in LABELS[indices], "identity 5 has one sample: skipped"


def test_the_order_is_a_function_of_seed_and_epoch():
    a = pk_order(LABELS, P, K, STEPS, seed=0, epoch=1)
    assert np.array_equal(a, pk_order(LABELS, P, K, STEPS, seed=0, epoch=1))
    assert not np.array_equal(a, pk_order(LABELS, P, K, STEPS, seed=0, epoch=2))
    assert not np.array_equal(a, pk_order(LABELS, P, K, STEPS, seed=1, epoch=1))


@pytest.mark.parametrize(("p", "k", "world"), [(4, 2, 2), (3, 2, 2), (2, 3, 3)])
def test_rank_parts_partition_each_global_batch(p, k, world):
    whole = pk_order(LABELS, p, k, STEPS, seed=4, epoch=3).reshape(STEPS, p * k)
    parts = [pk_order(LABELS, p, k, STEPS, seed=4, epoch=3, rank=r, world=world) for r in range(world)]
    local = p * k // world
    for step in range(STEPS):
        mine = [part[step * local : (step + 1) * local] for part in parts]  # each rank's step-th batch
        assert sorted(np.concatenate(mine).tolist()) == sorted(whole[step].tolist())
        for r in range(world):
            ids, n = np.unique(LABELS[mine[r]], return_counts=True)
            if p % world == 0:  # whole identities per rank: every rank keeps its positive pairs
                assert len(ids) == p // world and (n == k).all()
            else:  # rows r, r + world, ...: P identities x K / world samples when world divides K
                assert len(ids) == p and (n == k // world).all()


def test_too_few_identities_with_k_samples_is_an_error():
    with pytest.raises(ValueError, match="needs 3 identities .* at least 5 samples .* has 2"):
        pk_order(LABELS, 3, 5, 1, seed=0, epoch=1)


def test_config_refuses_p_times_k_other_than_the_batch_size():
    with pytest.raises(ConfigError, match=r"3 x 4 = 12\) must equal data.batch_size \(8\)"):
        apply_overrides(
            Config(), ["--data.sampler=pk", "--data.pk_identities=3", "--data.pk_samples=4", "--data.batch_size=8"]
        )
    with pytest.raises(ConfigError, match="data.sampler=pk"):
        apply_overrides(Config(), ["--loss=triplet", "--data.split=open"])


def test_pipeline_reads_the_training_split_in_pk_order(tiny_source, data_config):
    splits = loader.load(data_config(tiny_source / "manifest.csv", sampler="pk", pk_identities=4, pk_samples=2))
    train, labels = splits.train, splits.train.labels("target")
    kw = {"shuffle": True, "seed": 5, "epoch": 2, "train": True}
    batches = [b["target"] for b in train.batches(8, **kw)]
    steps = len(train) // 8
    expected = pk_order(labels, 4, 2, steps, seed=5, epoch=2)
    assert len(batches) == steps and all(len(b) == 8 for b in batches)
    targets = np.concatenate(batches)
    assert np.array_equal(targets, labels[expected])
    check_batches(expected, labels, 4, 2)
    for r in range(2):  # rank r reads its part: 2 whole identities of every global batch
        half = np.concatenate([b["target"] for b in train.batches(4, **kw, rank=r, world=2)])
        assert np.array_equal(half, labels[pk_order(labels, 4, 2, steps, seed=5, epoch=2, rank=r, world=2)])
        check_batches(np.flatnonzero(np.ones_like(half)), half, 2, 2)
    val = np.concatenate([b["target"] for b in splits.val.batches(8, **kw)])
    assert len(val) == len(splits.val), "only the training split is sampled P x K"
