"""The synthetic generator: determinism, caching, splits, the carry knob, missing modalities, file formats."""

import filecmp
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from research.config import DataConfig, SyntheticConfig
from research.data import faces, manifest, synthetic, transcripts
from research.data.text import Tokenizer


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    syn = SyntheticConfig(seed=5, identities=4, samples_per_identity=3, missing=0.2)
    for name in ("a", "b"):
        synthetic.generate(syn, tmp_path / name, 16, 0.2, 16000)
    synthetic.generate(SyntheticConfig(seed=6, identities=4, samples_per_identity=3), tmp_path / "c", 16, 0.2, 16000)
    names = files(tmp_path / "a")
    assert names == files(tmp_path / "b") and len(names) > 10
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert mismatch == [] and errors == []
    common = sorted(set(names) & set(files(tmp_path / "c")) - {"manifest.csv"})
    _, differ, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", common, shallow=False)
    assert len(differ) == len(common)


def tiny_cfg(root: Path, **syn) -> DataConfig:
    syn = SyntheticConfig(**{"identities": 4, "samples_per_identity": 3, **syn})
    return DataConfig(root=str(root), image_size=8, voice_seconds=0.1, synthetic=syn)


def test_ensure_caches_by_config(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    path = synthetic.ensure(cfg)
    assert path.name == "manifest.csv" and path.parent.parent == tmp_path

    def fail(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert synthetic.ensure(tiny_cfg(tmp_path)) == path  # same config: cache hit, nothing generated
    with pytest.raises(AssertionError, match="generated again"):
        synthetic.ensure(tiny_cfg(tmp_path, noise=0.5))  # any field that changes the files misses the cache
    with pytest.raises(AssertionError, match="generated again"):
        synthetic.ensure(DataConfig(root=str(tmp_path), image_size=16, voice_seconds=0.1, synthetic=cfg.synthetic))


def test_an_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def render_then_crash(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr(faces, "render", render_then_crash)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure(tiny_cfg(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_files_have_the_configured_formats(tmp_path):
    syn = SyntheticConfig(identities=4, samples_per_identity=5)
    path = synthetic.generate(syn, tmp_path, 24, 0.5, 8000)
    rows = manifest.read(path)
    assert len(rows) == 20
    lengths = []
    for row in rows:
        with Image.open(tmp_path / row.face) as image:
            assert image.size == (24, 24) and image.mode == "RGB" and image.format == "PNG"
        with wave.open(str(tmp_path / row.voice)) as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
            lengths.append(w.getnframes() / 8000)
        assert (tmp_path / row.text).read_text(encoding="utf-8").strip()
    assert 0.35 <= min(lengths) < max(lengths) <= 0.65  # 0.7 .. 1.3 x voice_seconds, varying
    assert len(set(lengths)) > 10


def test_splits_closed_covers_every_identity_and_open_is_identity_disjoint(tmp_path):
    syn = SyntheticConfig(identities=10, samples_per_identity=5)
    rows = manifest.read(synthetic.generate(syn, tmp_path, 8, 0.1, 16000))
    subjects = {r.subject for r in rows}
    assert len(subjects) == 10
    for split in manifest.SPLITS:
        assert {r.subject for r in rows if r.split == split} == subjects
    per_subject = Counter((r.subject, r.split) for r in rows)
    assert all(per_subject[s, "train"] == 3 and per_subject[s, "val"] == 1 for s in subjects)
    open_parts = {split: {r.subject for r in rows if r.open_split == split} for split in manifest.SPLITS}
    assert [len(open_parts[s]) for s in manifest.SPLITS] == [6, 2, 2]
    assert set.union(*open_parts.values()) == subjects


def contingency(persons, a, b, k: int) -> np.ndarray:
    table = np.zeros((k, k), dtype=int)
    for p in persons:
        table[a(p), b(p)] += 1
    return table


@pytest.mark.parametrize("carry", ["face", "voice", "text"])
def test_only_the_carrying_modality_shows_the_group(carry):
    k = 2
    persons = synthetic.people(SyntheticConfig(identities=40, groups=k, carry=carry))
    assert all(p.codes[carry] == p.group for p in persons)
    for part in manifest.SPLITS:  # 24 / 8 / 8 identities: multiples of K^3, so exactly balanced
        members = [p for p in persons if p.open_split == part]
        for other in set(synthetic.MODALITIES) - {carry}:
            table = contingency(members, lambda p: p.group, lambda p, o=other: p.codes[o], k)
            assert (table == len(members) // k**2).all(), (part, other, table)  # code independent of label


def test_redundant_shows_the_group_everywhere():
    persons = synthetic.people(SyntheticConfig(identities=45, groups=3, carry="redundant"))
    assert all(p.codes == {"face": p.group, "voice": p.group, "text": p.group} for p in persons)
    for part, size in zip(manifest.SPLITS, [27, 9, 9], strict=True):
        assert Counter(p.group for p in persons if p.open_split == part) == {0: size // 3, 1: size // 3, 2: size // 3}


@pytest.mark.parametrize("k, identities", [(2, 40), (3, 135)])  # parts of multiples of K^3 identities
def test_synergy_group_is_the_sum_of_face_and_voice_codes_and_each_alone_is_uniform(k, identities):
    persons = synthetic.people(SyntheticConfig(identities=identities, groups=k, carry="synergy"))
    assert all(p.group == (p.codes["face"] + p.codes["voice"]) % k for p in persons)
    for part in manifest.SPLITS:
        members = [p for p in persons if p.open_split == part]
        assert len(members) % k**3 == 0
        for modality in synthetic.MODALITIES:
            table = contingency(members, lambda p: p.group, lambda p, m=modality: p.codes[m], k)
            assert (table == len(members) // k**2).all(), (part, modality, table)


def test_traits_show_the_codes_and_the_person():
    persons = synthetic.people(SyntheticConfig(identities=8, groups=4, carry="synergy"))
    for p in persons:
        assert p.face.bars == faces.code_colour(p.codes["face"], 4)
        assert p.text.code == transcripts.CODE_WORDS[p.codes["text"]]
        assert p.text.pronoun == ("she" if p.female else "he") and p.face.long_hair == p.female
    assert len({p.voice.tone for p in persons}) == len({p.codes["voice"] for p in persons})


def test_missing_rate_is_roughly_as_configured_and_never_all_three(tmp_path):
    syn = SyntheticConfig(identities=20, samples_per_identity=10, missing=0.3)
    rows = manifest.read(synthetic.generate(syn, tmp_path, 8, 0.05, 16000))
    absent = np.array([[r.face == "", r.voice == "", r.text == ""] for r in rows])  # (N, 3)
    assert not absent.all(axis=1).any()
    # P(absent) = 0.3, less the 0.3^3 / 3 put back when all three are drawn absent: 0.291 per modality.
    assert np.abs(absent.mean(axis=0) - 0.291).max() < 0.05
    files_on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")} - {"manifest.csv"}
    assert files_on_disk == {getattr(r, m) for r in rows for m in synthetic.MODALITIES} - {""}


def test_the_code_word_survives_the_default_text_length(tmp_path):
    syn = SyntheticConfig(identities=6, samples_per_identity=10)
    rows = manifest.read(synthetic.generate(syn, tmp_path, 8, 0.05, 16000))
    texts = [(tmp_path / r.text).read_text() for r in rows]
    ids, mask = Tokenizer("minilm").encode(texts, DataConfig().text_len)
    assert mask[:, -1].sum() == 0  # nothing was truncated
    for text in texts:
        assert "Team " in text and text.split("Team ")[1].split(".")[0] in transcripts.CODE_WORDS


def test_bad_synthetic_settings_are_errors(tmp_path):
    with pytest.raises(ValueError, match="groups"):
        synthetic.people(SyntheticConfig(groups=27))
    with pytest.raises(ValueError, match="samples_per_identity"):
        synthetic.generate(SyntheticConfig(samples_per_identity=2), tmp_path, 8, 0.1, 16000)
    assert list(tmp_path.iterdir()) == []
