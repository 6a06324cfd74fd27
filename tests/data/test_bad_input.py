"""Bad input is a clear error naming the culprit file and manifest line, or (on_error=skip) a counted skip."""

import dataclasses
import logging

import numpy as np
import pytest
import soundfile

from research.data import loader, manifest
from research.data.manifest import DataError


def first_row(folder, modality: str, split: str = "val") -> manifest.Row:
    rows = manifest.read(folder / "manifest.csv")
    return next(r for r in rows if getattr(r, modality) and r.split == split)


def truncate(path):
    path.write_bytes(path.read_bytes()[:60])


def garbage(path):
    path.write_bytes(b"this is not a media file" * 10)


def empty(path):
    path.write_bytes(b"")


def nan_sample(path):
    """A float WAV with one NaN sample: the issue's silently wrong test/acc, and a non-finite loss naming no file."""
    audio, rate = soundfile.read(path, dtype="float32")
    audio[len(audio) // 2] = np.nan
    soundfile.write(path, audio, rate, subtype="FLOAT")


DAMAGE = [
    ("face", garbage, "unreadable face file"),
    ("face", truncate, "unreadable face file"),
    ("face", lambda p: p.unlink(), "missing face file"),
    ("voice", garbage, "unreadable voice file"),
    ("voice", truncate, "unreadable voice file"),
    ("voice", lambda p: p.unlink(), "missing voice file"),
    ("voice", lambda p: soundfile.write(p, np.zeros(0, np.float32), 16000), "has no samples"),
    ("voice", nan_sample, "has non-finite samples"),
    ("text", empty, "empty transcript"),
    ("text", lambda p: p.write_text(" \n\t \n"), "empty transcript"),
    ("text", lambda p: p.write_bytes(b"\x00" * 8), "empty transcript"),
    ("text", lambda p: p.write_bytes(b"caf\xe9 au lait"), "unreadable text file"),
    ("text", lambda p: p.unlink(), "missing text file"),
]


@pytest.mark.parametrize("modality, damage, message", DAMAGE)
def test_a_bad_file_is_an_error_naming_the_file_and_row(tiny, data_config, modality, damage, message):
    row = first_row(tiny, modality)
    path = tiny / getattr(row, modality)
    damage(path)
    with pytest.raises(DataError, match=message) as err:
        loader.load(data_config(tiny / "manifest.csv"))
    text = str(err.value)
    assert str(path) in text and f"line {row.line}" in text and str(tiny / "manifest.csv") in text


def test_skip_drops_and_counts_samples_with_bad_files(tiny, data_config, caplog):
    damaged = []
    for modality, split, damage in [("face", "train", garbage), ("voice", "test", garbage), ("text", "val", empty)]:
        row = first_row(tiny, modality, split)
        damage(tiny / getattr(row, modality))
        damaged.append(row)
    with caplog.at_level(logging.WARNING):
        splits = loader.load(data_config(tiny / "manifest.csv", on_error="skip"))
    assert splits.skipped == len({r.id for r in damaged}) == 3
    kept = splits.train.ids + splits.val.ids + splits.test.ids
    assert len(kept) == 48 - 3 and not {r.id for r in damaged} & set(kept)
    assert "skipped 3 of 48 samples" in caplog.text and str(tiny / damaged[0].face) in caplog.text


def rewrite(folder, row_id: str, **changes):
    path = folder / "manifest.csv"
    rows = [dataclasses.replace(r, **changes) if r.id == row_id else r for r in manifest.read(path)]
    manifest.write(path, rows)
    return path, next(r for r in rows if r.id == row_id)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"age": "30-39"}, "unknown age '30-39'"),
        ({"gender": "other"}, "unknown gender 'other'"),
        ({"group": "g7"}, "group 'g7' does not occur in the train split"),
        ({"subject": "p99"}, "subject 'p99' does not occur in the train split"),
    ],
)
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_unknown_label_is_an_error_naming_the_manifest_and_row(tiny, data_config, changes, message, on_error):
    path, row = rewrite(tiny, first_row(tiny, "face", "test").id, **changes)
    with pytest.raises(DataError, match=message) as err:
        loader.load(data_config(path, on_error=on_error))  # labels are never skipped: that would hide a bug
    assert f"{path} line {row.line}" in str(err.value)


def test_a_subject_in_two_open_splits_is_an_error(tiny, data_config):
    row = first_row(tiny, "face", "train")
    other = "val" if row.open_split != "val" else "test"
    path, _ = rewrite(tiny, row.id, open_split=other)
    with pytest.raises(DataError, match=f"subject '{row.subject}' is in several open splits"):
        loader.load(data_config(path, split="open"))


@pytest.mark.parametrize("split", ["train", "test"])
def test_skip_drops_and_counts_a_voice_with_a_nan_sample(tiny, data_config, split):
    row = first_row(tiny, "voice", split)
    nan_sample(tiny / row.voice)
    splits = loader.load(data_config(tiny / "manifest.csv", on_error="skip"))
    assert splits.skipped == 1 and row.id not in splits.train.ids + splits.val.ids + splits.test.ids
    assert all(np.isfinite(v).all() for v in splits.train.voice + splits.test.voice)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_transcript_column_of_nul_bytes_is_an_empty_transcript(tiny, data_config, on_error):
    row = first_row(tiny, "text", "train")
    path, row = rewrite(tiny, row.id, text="", transcript="\x00\x00\x00")
    if on_error == "raise":
        with pytest.raises(DataError, match=f"empty transcript in the transcript column of sample '{row.id}'") as err:
            loader.load(data_config(path))
        assert f"{path} line {row.line}" in str(err.value)
    else:
        assert loader.load(data_config(path, on_error="skip")).skipped == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_with_a_byte_order_mark_reads_as_without(tiny, data_config, suffix):
    rows = manifest.read(tiny / "manifest.csv")
    path = manifest.write(tiny / f"bom{suffix}", rows)
    expected = manifest.read(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what spreadsheets write
    assert manifest.read(path) == expected
    assert len(loader.load(data_config(path)).train) > 0


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_not_in_utf8_is_one_line_naming_the_file_and_line(tiny, data_config, suffix, on_error):
    rows = manifest.read(tiny / "manifest.csv")
    path = manifest.write(tiny / f"latin1{suffix}", rows)
    lines = path.read_bytes().split(b"\n")
    line = 6 if suffix == ".csv" else 5  # the header is line 1 of the CSV
    lines[line - 1] = lines[line - 1].replace(rows[4].subject.encode(), b"Ren\xe9e", 1)  # a Latin-1 name
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as err:
        loader.load(data_config(path, on_error=on_error))
    assert str(err.value) == f"manifest {path} line {line}: not UTF-8 (byte 0xe9); save the file as UTF-8"
