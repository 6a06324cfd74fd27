"""The grown manifest: attribute columns, dataset class lists in the sidecar, boxes, frames, segments and
inline transcripts; their checks, the loader's labels and the fairness breakdown over a new attribute."""

import dataclasses

import numpy as np
import pytest
import soundfile

from research.data import loader, manifest
from research.data.manifest import DataError, Meta, Row
from research.evaluation import evaluate

BINS = ["7-13", "14-18", "19-24", "25-32"]


def people(n=6):
    """n voice samples of 3 subjects with an ethnicity attribute and the dataset's own age bins."""
    rows = []
    for k in range(n):
        s = f"p{k % 3}"
        rows.append(
            Row(f"s{k}", s, ("train", "train", "val", "test")[k % 4 if k < 4 else 0], None, "", f"v{k}.wav", "",
                BINS[k % 3], "female" if k % 2 else "male", "all", segment="0 0.05" if k == 0 else "",
                transcript=f"hello {k}", attributes={"ethnicity": ("asian", "caucasian", "")[k % 3]})
        )  # fmt: skip
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_grown_rows_round_trip(tmp_path, suffix):
    rows = people() + [Row("img", "p0", "train", None, "f.jpg", "", "", "", "", "all", box="1 2 30 40.5", frame="1.5")]
    path = manifest.write(tmp_path / f"m{suffix}", rows, Meta(classes={"age": BINS}))
    assert [dataclasses.replace(r, line=0) for r in manifest.read(path)] == [
        dataclasses.replace(r, attributes=r.attributes or {"ethnicity": ""}) for r in rows
    ]
    assert manifest.read_meta(path).classes == {"age": BINS}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"box": "1 2 3"}, "bad box '1 2 3'"),
        ({"box": "1 2 0 4"}, "bad box"),
        ({"frame": "-1"}, "bad frame '-1'"),
        ({"segment": "2 1"}, "bad segment '2 1'"),
        ({"age": "0-17"}, "unknown age '0-17' \\(allowed: 7-13, 14-18"),
        ({"attributes": {"ethnicity": "martian"}}, "unknown ethnicity 'martian'"),
        ({"text": "t.txt"}, "give a text file or a transcript, not both"),
    ],
)
def test_bad_grown_values_name_the_line(tmp_path, change, message):
    rows = people()
    rows[1] = dataclasses.replace(rows[1], **change)
    path = manifest.write(tmp_path / "m.csv", rows, Meta(classes={"age": BINS, "ethnicity": ["asian", "caucasian"]}))
    with pytest.raises(DataError, match=f"{path} line 3: {message}"):
        manifest.read(path)


def test_the_project_age_bins_apply_without_a_sidecar(tmp_path):
    path = manifest.write(tmp_path / "m.csv", people())
    with pytest.raises(DataError, match="unknown age '7-13'"):
        manifest.read(path)


def write_voices(folder, rows):
    for r in rows:
        soundfile.write(folder / r.voice, np.zeros(1600, np.float32) + 0.1, 16000)


def test_any_attribute_is_a_label_and_can_be_the_target(tmp_path, data_config):
    rows = people()
    write_voices(tmp_path, rows)
    classes = {"age": BINS, "ethnicity": ["caucasian", "asian"]}
    path = manifest.write(tmp_path / "m.csv", rows, Meta(classes=classes))
    splits = loader.load(data_config(path, target="ethnicity"))
    assert splits.classes["ethnicity"] == ["caucasian", "asian"] and splits.classes["age"] == BINS
    train = splits.train
    expected = {r.id: r for r in rows}
    for k, sample in enumerate(train.ids):
        r = expected[sample]
        want = classes["ethnicity"].index(r.attributes["ethnicity"]) if r.attributes["ethnicity"] else -1
        assert train.labels("ethnicity")[k] == want == train.labels("target")[k]
        assert BINS[train.labels("age")[k]] == r.age
    assert len(train.voice[train.ids.index("s0")]) == 800  # its 0.05 s segment
    assert train.present["text"].all()
    with pytest.raises(DataError, match="data.target 'height' is not a label"):
        loader.load(data_config(path, target="height"))
    empty = [dataclasses.replace(r, attributes={"ethnicity": ""}) for r in rows]
    manifest.write(path, empty, Meta(classes=classes))
    with pytest.raises(DataError, match="no training sample has a known 'ethnicity'"):
        loader.load(data_config(path, target="ethnicity"))


def test_a_new_attribute_enters_the_fairness_breakdown(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    preds = {
        "log_probs": np.log(np.full((n, 2), 0.5)),
        "target": np.arange(n) % 2,
        "subject": np.arange(n) % 2,
        "embedding": rng.standard_normal((n, 4)),
        "ethnicity": (np.arange(n) // 2) % 2,  # known for all: broken down
        "age": np.full(n, -1),  # unknown for all: left out
    }
    preds["log_probs"][np.arange(n) < 10, preds["target"][np.arange(n) < 10]] = 0.0  # right on the first 10
    classes = {"subject": ["a", "b"], "ethnicity": ["asian", "caucasian"], "age": BINS}
    found = evaluate(preds, classes, tmp_path, plots=False)
    for g, name in enumerate(classes["ethnicity"]):
        mask = preds["ethnicity"] == g
        right = preds["log_probs"][mask].argmax(1) == preds["target"][mask]
        assert found[f"fair/ethnicity/acc/{name}"] == pytest.approx(right.mean())
    assert not any(k.startswith("fair/age/") for k in found)
