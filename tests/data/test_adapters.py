"""Each adapter's manifest, row by row, against what the fixture in the dataset's real layout holds; and
the decoded samples (through the loader) against the fixture's media: tone per identity, colour per face
box, grey level per video frame."""

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.prepare import prepare
from research.data import loader, manifest
from research.data.datasets.common import Options
from tests.data import layouts


def run(name, root, tmp_path, **kw):
    out = tmp_path / "out" / f"{name}.csv"
    prepared = prepare(name, root, Options(out, progress=False, **kw))
    return out, prepared, {r.id: r for r in manifest.read(out)}


def peak(wave, rate=16000):
    """Dominant frequency (Hz) of a waveform."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()]


def decoded(out, data_config, **kw):
    """id -> (face, voice, text_present) over all splits of the loaded manifest."""
    splits = loader.load(data_config(out, **kw))
    found = {}
    for part in (splits.train, splits.val, splits.test):
        for k, sample in enumerate(part.ids):
            found[sample] = (part.face[k], part.voice[k], part.present["text"][k], part)
    return splits, found


def test_voxceleb1(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["voxceleb1"]
    out, prepared, rows = run("voxceleb1", root, tmp_path)
    assert set(rows) == set(spec["files"]) and prepared.skipped == {}
    meta = {p[0]: p for p in layouts.VOX1}
    for name, (subject, split) in spec["files"].items():
        r = rows[name]
        assert (r.subject, r.split, r.open_split) == (subject, split, layouts.VOX1_OPEN[subject])
        assert (out.parent / r.voice).resolve() == (root / "wav" / name).resolve()
        assert r.gender == {"m": "male", "f": "female"}[meta[subject][2]] and r.age == "" and not r.face
        assert r.attributes == {"nationality": meta[subject][3]}
    assert manifest.read_meta(out).trials == spec["trials"]
    splits, samples = decoded(out, data_config, split="open", target="nationality")
    for name, (_, voice, _, _) in samples.items():
        assert len(voice) == 4800 and peak(voice) == pytest.approx(layouts.tone(rows[name].subject), abs=4)
    assert splits.classes["nationality"] == ["India", "Ireland", "New Zealand", "USA"]
    i, j, target = splits.test.trials["vox1-o"]
    assert [(int(t), splits.test.ids[a], splits.test.ids[b]) for a, b, t in zip(i, j, target, strict=True)] == spec[
        "trials"
    ]["vox1-o"]
    assert "vox1-e" not in splits.test.trials  # it spans training identities: usable in no split here


def test_voxceleb2(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["voxceleb2"]
    out, _, rows = run("voxceleb2", root, tmp_path)
    assert set(rows) == set(spec["files"])
    opened = {"id00012": "train", "id00015": "train", "id00017": "val", "id09999": "test"}
    genders = {v: g for v, _, _, g, _ in layouts.VOX2}
    for name, (subject, part) in spec["files"].items():
        r = rows[name]
        assert (r.subject, r.open_split, r.gender[0]) == (subject, opened[subject], genders[subject])
        assert r.split == ("train", "val", "test")[int(name[-9:-4]) - 1]  # utterances 1, 2, 3 in path order
        assert (out.parent / r.voice).resolve() == (root / part / "aac" / name).resolve()
    _, samples = decoded(out, data_config)
    for name, (_, voice, _, _) in samples.items():  # AAC adds up to ~2 frames of padding; 44.1 kHz stereo resampled
        assert 4800 <= len(voice) <= 4800 + 2 * 1024 + 800
        assert peak(voice[:4800]) == pytest.approx(layouts.tone(rows[name].subject), abs=4)


def test_vggface2(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["vggface2"]
    out, _, rows = run("vggface2", root, tmp_path)
    assert set(rows) == set(spec["files"])
    for key, (cls, part, box) in spec["files"].items():
        r = rows[key]
        assert (r.subject, r.box, r.open_split) == (
            cls,
            " ".join(map(str, box)),
            "test" if part == "test" else r.open_split,
        )
        assert (out.parent / r.face).resolve() == (root / part / f"{key}.jpg").resolve()
        assert r.split == ("train", "val", "test")[["0001_01", "0002_01", "0010_02"].index(key.split("/")[1])]
    assert {r.open_split for r in rows.values() if r.subject != "n009999"} == {"train", "val"}
    _, samples = decoded(out, data_config)
    for key, (face, _, _, _) in samples.items():  # the crop holds the box's colour only (grey 128 outside)
        np.testing.assert_allclose(face.reshape(3, -1).mean(1), layouts.face_colour(key.split("/")[0]), atol=6)


def test_librispeech(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["librispeech"]
    out, _, rows = run("librispeech", root, tmp_path)
    assert set(rows) == set(spec["files"])
    sex = {s: x for s, x, _, _ in layouts.SPEAKERS}
    for key, (speaker, subset, words) in spec["files"].items():
        r = rows[key]
        assert (r.subject, r.transcript, r.attributes, r.gender[0].upper()) == (
            speaker,
            words,
            {"subset": subset},
            sex[speaker],
        )
        assert r.open_split == {"train": "train", "dev": "val", "test": "test"}[subset.split("-")[0]]
        assert r.split == ("train", "val", "test")[int(key[-4:])]
    _, samples = decoded(out, data_config, split="open")
    for key, (_, voice, has_text, _) in samples.items():
        assert has_text and peak(voice) == pytest.approx(layouts.tone(rows[key].subject), abs=4)


def test_firstimpressions(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["firstimpressions"]
    out, _, rows = run("firstimpressions", root, tmp_path, fps=1.0)
    assert len(rows) == 2 * len(layouts.VIDEOS)  # 2 s clips, one sample a second
    with out.open() as f:
        scores = {r["id"]: r for r in csv.DictReader(f)}
    parts = {"training": "train", "validation": "val", "test": "test"}
    for video, yt, part, ethnicity, gender, age in layouts.VIDEOS:
        for k in (0, 1):
            r = rows[f"{video}#{k}"]
            assert (r.subject, r.split, r.frame, r.segment) == (
                yt,
                parts[part],
                f"{k + 0.5:.3f}",
                f"{k:.3f} {k + 1:.3f}",
            )
            assert r.attributes == {"ethnicity": {"1": "asian", "2": "caucasian", "3": "african-american"}[ethnicity]}
            bins = ("0-6", "7-13", "14-18", "19-24", "25-32", "33-45", "46-60", "61+")
            assert (r.gender, r.age) == ({"1": "male", "2": "female"}[gender], bins[int(age) - 1])
            assert r.transcript == spec["texts"][video] and r.face == r.voice and r.face.endswith(video)
            for trait, value in spec["scores"][video].items():
                assert float(scores[r.id][trait]) == pytest.approx(value)
    splits, samples = decoded(out, data_config, target="ethnicity")
    assert splits.classes["age"][:2] == ["0-6", "7-13"] and splits.classes["ethnicity"][0] == "asian"
    for sample_id, (face, voice, has_text, _) in samples.items():
        k = int(sample_id.split("#")[1])
        frame = int((k + 0.5) * layouts.FPS)  # the frame shown at the middle of second k
        assert abs(face.astype(float).mean() - layouts.level(frame)) < 4 and has_text
        assert abs(len(voice) - 16000) <= 1 and peak(voice) == pytest.approx(
            layouts.tone(rows[sample_id].subject), abs=4
        )


def test_voxceleb2_x_vggface2(layouts_source, tmp_path, data_config):
    root, spec = layouts_source["voxceleb2"]
    faces = layouts_source["vggface2"][1]["files"]
    out, _, rows = run("voxceleb2-vggface2", root, tmp_path, faces=layouts_source["vggface2"][0])
    assert set(rows) == set(spec["files"])
    cls = {v: c for v, c, *_ in layouts.VOX2}
    for subject in cls:
        mine = sorted((r for r in rows.values() if r.subject == subject), key=lambda r: r.id)
        images = sorted(k for k in faces if k.startswith(cls[subject]))
        for k, r in enumerate(mine):  # the identity's images in name order, taken in turn, with their boxes
            assert r.face.endswith(f"{images[k % len(images)]}.jpg") and r.box == " ".join(
                map(str, faces[images[k]][2])
            )
    parts = {}
    for r in rows.values():
        parts.setdefault(r.subject, set()).add(r.open_split)
    assert all(len(p) == 1 for p in parts.values()) and parts["id09999"] == {"test"}
    splits = loader.load(data_config(out, split="open"))
    assert splits.test.present["face"].all() and splits.test.present["voice"].all()


def test_voxceleb1_x_vggface_drops_people_without_faces(layouts_source, tmp_path):
    root, spec = layouts_source["voxceleb1"]
    out, prepared, rows = run("voxceleb1-vggface", root, tmp_path, faces=layouts_source["vggface"][0])
    with_faces = {p[0]: p[1] for p in layouts.VOX1[1:4]}
    assert {r.subject for r in rows.values()} == set(with_faces)
    assert prepared.skipped == {"utterance of an identity without faces": 8}
    for r in rows.values():
        assert Path(r.face).parent.name == with_faces[r.subject] and r.voice
    assert manifest.read_meta(out).trials == {}  # both official lists name people without faces


def test_voxceleb2_training_with_voxceleb1_as_the_test_set(layouts_source, tmp_path, data_config):
    vox1_root, vox1 = layouts_source["voxceleb1"]
    out, _, rows = run("voxceleb2-voxceleb1", layouts_source["voxceleb2"][0], tmp_path, test_root=vox1_root)
    assert set(rows) == set(layouts_source["voxceleb2"][1]["files"]) | set(vox1["files"])
    for r in rows.values():
        vox2_test = r.subject == "id09999"
        assert r.open_split == ("test" if r.id in vox1["files"] else "val" if vox2_test else r.open_split)
    assert {r.open_split for r in rows.values() if r.id not in vox1["files"]} == {"train", "val"}
    splits = loader.load(data_config(out, split="open"))
    assert set(splits.test.trials) == {"vox1-o", "vox1-e"}  # every VoxCeleb1 list is usable now
    i, j, target = splits.test.trials["vox1-e"]
    assert [(int(t), splits.test.ids[a], splits.test.ids[b]) for a, b, t in zip(i, j, target, strict=True)] == vox1[
        "trials"
    ]["vox1-e"]
