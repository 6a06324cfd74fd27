"""Manifest read / write: round trips in both formats, and clear errors naming the file and line."""

import dataclasses
import json

import pytest

from research.data import manifest
from research.data.manifest import DataError, Row

HEADER = "id,subject,split,open_split,face,voice,text,age,gender,group"
GOOD = "s1,p1,train,train,face/a.png,,text/a.txt,25-34,female,g0"


def rows(open_split: str | None = "val") -> list[Row]:
    return [
        Row("a", "p1", "train", open_split, "face/a.png", "voice/a.wav", "text/a.txt", "0-17", "female", "g0"),
        Row("b", "p2", "test", open_split, "", "voice/b.wav", "", "65+", "male", "g1"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("open_split", ["val", None])
def test_write_then_read_gives_the_same_rows(tmp_path, suffix, open_split):
    path = manifest.write(tmp_path / f"m{suffix}", rows(open_split))
    back = manifest.read(path)
    assert [dataclasses.replace(r, line=0) for r in back] == rows(open_split)
    assert [r.line for r in back] == ([2, 3] if suffix == ".csv" else [1, 2])


def test_the_csv_file_is_plain_text_with_a_header(tmp_path):
    path = manifest.write(tmp_path / "m.csv", rows())
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    assert lines[2] == "b,p2,test,val,,voice/b.wav,,65+,male,g1"


def test_the_jsonl_file_has_one_object_per_line(tmp_path):
    path = manifest.write(tmp_path / "m.jsonl", rows(None))
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "id": "a", "subject": "p1", "split": "train", "face": "face/a.png", "voice": "voice/a.wav",
        "text": "text/a.txt", "age": "0-17", "gender": "female", "group": "g0",
    }  # fmt: skip


def write_csv(tmp_path, *lines, header=HEADER):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ("s2,p1,train,train,face/b.png,,,25-34,female", "line 3: 9 fields"),
        ("s2,p1,training,train,face/b.png,,,25-34,female,g0", "line 3: unknown split 'training'"),
        ("s2,p1,train,dev,face/b.png,,,25-34,female,g0", "line 3: unknown open_split 'dev'"),
        ("s2,p1,train,train,face/b.png,,,30,female,g0", "line 3: unknown age '30'"),
        ("s2,p1,train,train,face/b.png,,,25-34,f,g0", "line 3: unknown gender 'f'"),
        ("s2,,train,train,face/b.png,,,25-34,female,g0", "line 3: empty 'subject'"),
        ("s2,p1,train,train,face/b.png,,,25-34,female,", "line 3: empty 'group'"),
        ("s2,p1,train,train,,,,25-34,female,g0", "line 3: sample 's2' has no face, voice or text"),
        ("s1,p1,train,train,face/b.png,,,25-34,female,g0", "line 3: duplicate id 's1'"),
    ],
)
def test_a_malformed_csv_row_names_the_file_and_line(tmp_path, line, message):
    path = write_csv(tmp_path, GOOD, line)
    with pytest.raises(DataError, match=message) as err:
        manifest.read(path)
    assert str(path) in str(err.value)


def test_a_missing_column_names_the_file_and_the_column(tmp_path):
    header = "id,subject,split,face,voice,text,age,gender"
    path = write_csv(tmp_path, "s1,p1,train,face/a.png,,,25-34,female", header=header)
    with pytest.raises(DataError, match="missing column.*group") as err:
        manifest.read(path)
    assert str(path) in str(err.value)


def test_open_split_is_optional(tmp_path):
    path = write_csv(tmp_path, "s1,p1,train,face/a.png,,,25-34,female,g0", header=HEADER.replace(",open_split", ""))
    assert manifest.read(path)[0].open_split is None


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    good = json.dumps(dict(zip(HEADER.split(","), GOOD.split(","), strict=True)))
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n{not json\n")
    with pytest.raises(DataError, match=f"{path} line 2: not valid JSON"):
        manifest.read(path)
    path.write_text(good + "\n" + json.dumps({"id": "s2", "subject": "p1"}) + "\n")
    with pytest.raises(DataError, match=f"{path} line 2: missing column"):
        manifest.read(path)
    path.write_text(good.replace('"g0"', "3") + "\n")
    with pytest.raises(DataError, match=f"{path} line 1: column 'group' must be a string"):
        manifest.read(path)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        manifest.read(tmp_path / "nope.csv")
    (tmp_path / "m.tsv").write_text(HEADER)
    with pytest.raises(DataError, match="unknown format '.tsv'"):
        manifest.read(tmp_path / "m.tsv")
