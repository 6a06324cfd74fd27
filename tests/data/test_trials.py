"""Official trial lists: verification scores exactly the listed pairs; the loader maps a sidecar's lists
onto the split that holds their samples; a list naming an unknown sample is an error naming it."""

import numpy as np
import pytest
import soundfile
from sklearn.metrics import roc_curve

from research.data import loader, manifest
from research.data.manifest import DataError, Meta
from research.evaluation import evaluate
from research.metrics import verification

# A hand-made list over 6 samples of 3 subjects (a0, a1 are subject 0, ...): pairs, targets as a file would give.
HAND = [(1, 0, 1), (0, 0, 2), (0, 1, 4), (1, 2, 3), (0, 3, 5), (1, 4, 5), (0, 2, 5)]


def reference_eer(scores, labels):
    """EER from scikit-learn's ROC: where FNR crosses FPR, linearly interpolated."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    k = np.argmax(fnr - fpr <= 0)
    a = (fnr[k - 1] - fpr[k - 1]) / ((fnr[k - 1] - fpr[k - 1]) - (fnr[k] - fpr[k]))
    return fpr[k - 1] + a * (fpr[k] - fpr[k - 1])


def test_verification_scores_exactly_the_listed_pairs():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 4))
    subjects = np.array([0, 0, 1, 1, 2, 2])
    i, j, target = (np.array(c) for c in zip(*[(a, b, t == 1) for t, a, b in HAND], strict=True))
    metrics, trials = verification.verify(emb, subjects, np.array([9]), trials=(i, j, target))
    np.testing.assert_array_equal(trials["i"], i)
    np.testing.assert_array_equal(trials["j"], j)
    cosines = [emb[a] @ emb[b] / np.linalg.norm(emb[a]) / np.linalg.norm(emb[b]) for _, a, b in HAND]
    np.testing.assert_allclose(trials["score"], cosines)
    assert metrics["eer"] == pytest.approx(reference_eer(np.array(cosines), target))


def rows():
    """6 voice samples of 3 subjects: a* in train, b* and c* in test (open split)."""
    out = []
    for s, split in (("a", "train"), ("b", "test"), ("c", "test")):
        for k in range(2):
            out.append(manifest.Row(f"{s}{k}.wav", s, "train", split, "", f"{s}{k}.wav", "", "", "", "all"))
    return out


def write_voices(tmp_path, rows):
    for r in rows:
        soundfile.write(tmp_path / r.voice, np.random.default_rng(0).uniform(-0.1, 0.1, 800), 8000)


def test_the_loader_maps_a_trial_list_onto_the_split_that_holds_it(tmp_path, data_config):
    listed = rows()
    write_voices(tmp_path, listed)
    pairs = [(1, "b0.wav", "b1.wav"), (0, "b0.wav", "c1.wav"), (0, "c0.wav", "b1.wav")]
    spans = [(1, "a0.wav", "b0.wav")]  # spans train and test: usable in no split
    path = manifest.write(tmp_path / "m.csv", listed, Meta(trials={"hand": pairs, "spans": spans}))
    splits = loader.load(data_config(path, split="open"))
    assert set(splits.test.trials) == {"hand"} and not splits.train.trials
    i, j, target = splits.test.trials["hand"]
    assert [(int(t), splits.test.ids[a], splits.test.ids[b]) for a, b, t in zip(i, j, target, strict=True)] == pairs


def test_evaluate_reports_the_official_list(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((6, 4))
    subjects = np.array([0, 0, 1, 1, 2, 2])
    i, j, target = (np.array(c) for c in zip(*[(a, b, t == 1) for t, a, b in HAND], strict=True))
    preds = {"embedding": emb, "subject": subjects, "target": -np.ones(6, int)}
    found = evaluate(preds, {"subject": ["0", "1", "2"]}, tmp_path, plots=False, official={"vox1-o": (i, j, target)})
    expected, _ = verification.verify(emb, subjects, np.array([]), trials=(i, j, target))
    assert {k: v for k, v in found.items() if k.startswith("vox1-o/")} == {
        f"vox1-o/{k}": v for k, v in expected.items()
    }


def test_a_trial_naming_a_sample_outside_the_manifest_is_an_error(tmp_path, data_config):
    listed = rows()
    write_voices(tmp_path, listed)
    path = manifest.write(
        tmp_path / "m.csv", listed, Meta(trials={"hand": [(1, "b0.wav", "b1.wav"), (0, "b0.wav", "zz.wav")]})
    )
    with pytest.raises(DataError, match="trial 2 of list 'hand' names 'zz.wav'") as err:
        loader.load(data_config(path, split="open"))
    assert str(manifest.meta_path(path)) in str(err.value)
