"""The synthetic data is learnable: identity from each modality alone, and the group code (carry=redundant)
from each modality on unseen identities, both read by a linear probe on simple fixed features."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from research.config import DataConfig, SyntheticConfig
from research.data import loader

pytestmark = pytest.mark.statistical


def features(data: loader.SampleSet, vocab: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels; mean and std over 16 ms frames of the log power spectrum; bag of the token ids in vocab."""
    face = data.face.reshape(len(data), -1) / 255.0  # (N, 3HW)
    voice = []
    for wave in data.voice:
        frames = wave[: len(wave) // 256 * 256].reshape(-1, 256) * np.hanning(256)  # (T, 256)
        log_power = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-6)  # (T, 129)
        voice.append(np.concatenate([log_power.mean(0), log_power.std(0)]))
    text = np.array([np.isin(vocab, ids[mask]) for ids, mask in zip(data.text_ids, data.text_mask, strict=True)])
    return {"face": face, "voice": np.array(voice), "text": text}


def probe(modality: str):
    """Logistic regression; standardised inputs except the (binary, sparse) bag of words."""
    if modality == "text":
        return LogisticRegression(C=1.0, max_iter=500)
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))


def probe_accuracy(splits: loader.Splits, label: str) -> dict[str, float]:
    """Test accuracy of a logistic regression per modality, trained on train + val."""
    vocab = np.unique(splits.train.text_ids)
    train, val, test = (features(data, vocab) for data in (splits.train, splits.val, splits.test))
    y = np.concatenate([splits.train.labels(label), splits.val.labels(label)])
    scores = {}
    for m in train:
        fitted = probe(m).fit(np.concatenate([train[m], val[m]]), y)
        scores[m] = fitted.score(test[m], splits.test.labels(label))
    return scores


def load(tmp_path, split: str, seed: int = 1, **fields) -> loader.Splits:
    syn = SyntheticConfig(seed=seed, samples_per_identity=8, **fields)
    return loader.load(DataConfig(root=str(tmp_path), image_size=16, voice_seconds=0.5, split=split, synthetic=syn))


def test_identity_is_recognisable_from_each_modality_alone(tmp_path):
    scores = probe_accuracy(load(tmp_path, "closed", identities=10), "identity")
    assert min(scores.values()) > 0.4, scores  # chance is 0.1 (measured: face 1.0, text 0.95, voice 0.6)


def test_the_group_code_is_plain_in_every_modality_on_unseen_identities(tmp_path):
    splits = load(tmp_path, "open", identities=20, groups=4, carry="redundant")
    assert set(splits.test.labels("group")) == {0, 1, 2, 3}  # 4 unseen identities, one per group
    scores = probe_accuracy(splits, "group")
    assert min(scores.values()) > 0.95, scores  # chance is 0.25
