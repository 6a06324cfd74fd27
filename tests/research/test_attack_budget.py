"""The attack's budget per sample (research/robustness.py `per_sample`): batch rows in any order, a sample read
as k copies (a video face at data.face_frames frames), folded to one row per sample in sample order with the
largest L-inf and the lowest SNR over its copies; checked against a loop over the samples."""

import numpy as np

from research.robustness import per_sample


def test_copies_fold_to_the_worst_budget_of_each_sample_in_sample_order():
    rng = np.random.default_rng(0)
    index = rng.permutation(np.repeat(np.arange(7), 3))  # 7 samples x 3 frames, in batch (shuffled) order
    linf, snr = rng.uniform(0, 0.1, 21), rng.uniform(10, 40, 21)
    folded = per_sample({"index": index.copy(), "linf": linf, "snr_db": snr})
    for i in range(7):
        assert folded["linf"][i] == linf[index == i].max()
        assert folded["snr_db"][i] == snr[index == i].min()
    assert folded.keys() == {"linf", "snr_db"}


def test_one_copy_per_sample_is_the_batch_rows_in_sample_order():
    index = np.array([3, 0, 2, 1])  # whole voices come longest first
    folded = per_sample({"index": index, "linf": np.array([0.3, 0.0, 0.2, 0.1]), "snr_db": np.array([3, 0, 2, 1.0])})
    np.testing.assert_array_equal(folded["linf"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(folded["snr_db"], [0, 1, 2, 3.0])
