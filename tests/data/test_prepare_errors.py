"""Bad input to the adapters: a clear DataError naming the file (and line), or with on_error=skip a counted
skip; and the manifest appears atomically or not at all."""

import csv
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.prepare import main, prepare
from research.data import manifest
from research.data.datasets.common import Options
from research.data.manifest import DataError

ROOT = Path(__file__).resolve().parents[2]


def opts(tmp_path, **kw):
    return Options(tmp_path / "out" / "m.csv", progress=False, **kw)


def test_a_missing_root(tmp_path):
    with pytest.raises(DataError, match=f"dataset root {tmp_path / 'nope'} does not exist"):
        prepare("voxceleb1", tmp_path / "nope", opts(tmp_path))


def remove(path):
    if path.is_dir():
        for inner in sorted(path.rglob("*"), reverse=True):
            inner.rmdir() if inner.is_dir() else inner.unlink()
        path.rmdir()
    else:
        path.unlink()


def rename_aac(root):
    for part in ("dev", "test"):
        (root / part / "aac").rename(root / part / "audio")


@pytest.mark.parametrize(
    "name, damage, message",
    [
        (
            "voxceleb1",
            lambda r: remove(r / "wav"),
            "wav does not exist: expected VoxCeleb1's wav/<id>/<video>/<utt>.wav",
        ),
        ("voxceleb1", lambda r: remove(r / "wav" / "id10001"), "identity id10001 is not in vox1_meta.csv|not under"),
        ("voxceleb2", rename_aac, "dev/aac does not exist: expected VoxCeleb2's dev|test/aac/<id>/<video>/<utt>.m4a"),
        ("vggface2", lambda r: (remove(r / "train"), remove(r / "test")), "holds no train|test/<class>/<image>.jpg"),
        ("librispeech", lambda r: [d.rename(r / d.name.upper()) for d in r.glob("*-*")], "holds no subset folder"),
        ("librispeech", lambda r: remove(r / "SPEAKERS.TXT"), "SPEAKERS.TXT does not exist"),
        ("firstimpressions", lambda r: remove(r / "annotation_test.pkl"), "annotation_test.pkl does not exist"),
    ],
)
def test_a_wrong_layout_names_what_was_expected(layout, tmp_path, name, damage, message):
    root = layout(name)
    damage(root)
    with pytest.raises(DataError, match=message):
        prepare(name, root, opts(tmp_path))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, meta, header, column",
    [
        ("voxceleb1", "vox1_meta.csv", "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\tAge", "Age"),
        ("voxceleb2", "vox2_meta.csv", "VoxCeleb2 ID ,VGGFace2 ID ,Sex ,Set ", "Sex"),
        ("vggface2", "identity_meta.csv", "Class_ID, Name, Sample_Num, Flag, Gender, Height", "Height"),
        ("firstimpressions", "eth_gender_annotations_dev.csv", "VideoName;YouTubeID;Ethnicity;Gender;Age", "Age"),
    ],
)
def test_a_meta_file_with_an_unknown_column(layout, tmp_path, name, meta, header, column):
    root = layout(name)
    lines = (root / meta).read_text().splitlines()
    sep = "\t" if "\t" in header else ";" if ";" in header else ","
    extra = [] if column == "Sex" else [line + sep + "x" for line in lines[1:]]
    (root / meta).write_text("\n".join([header, *(extra or lines[1:])]) + "\n")
    with pytest.raises(DataError, match=f"{root / meta} line 1: .*unknown column\\(s\\) \\['{column}'\\]"):
        prepare(name, root, opts(tmp_path))


def garbage(path):
    path.write_bytes(b"\x00\x01 this is not an MPEG-4 file " * 20)


@pytest.mark.parametrize(
    "name, pattern, per_file",
    [("voxceleb2", "dev/aac/id00015/*/00002.m4a", 1), ("firstimpressions", "**/bqSmIyXcqXI.001.mp4", 2)],
)
def test_an_unreadable_m4a_or_mp4_is_named_or_skipped_and_counted(layout, tmp_path, name, pattern, per_file):
    root = layout(name)
    (bad,) = root.glob(pattern)
    garbage(bad)
    with pytest.raises(DataError, match=f"unreadable voice file {bad}"):
        prepare(name, root, opts(tmp_path))
    assert not (tmp_path / "out" / "m.csv").exists()
    prepared = prepare(name, root, opts(tmp_path, on_error="skip"))
    assert sum(prepared.skipped.values()) == 1 and str(bad) in prepared.problems[0]
    voices = {(tmp_path / "out" / r.voice).resolve() for r in manifest.read(tmp_path / "out" / "m.csv")}
    assert bad.resolve() not in voices
    assert len(prepared.rows) == 12 - per_file  # both fixtures give 12 samples


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_builds_anything_but_plain_data_is_refused(layout, tmp_path, monkeypatch):
    root = layout("firstimpressions")
    monkeypatch.chdir(tmp_path)
    clean = (root / "transcription_validation.pkl").read_bytes()
    table = pickle.loads(clean)
    table["J4GQm9j0JZ0.005.mp4"] = Boom()
    (root / "transcription_validation.pkl").write_bytes(pickle.dumps(table, protocol=2))
    with pytest.raises(DataError, match=f"unsafe or unreadable pickle {root / 'transcription_validation.pkl'}.*system"):
        prepare("firstimpressions", root, opts(tmp_path))
    assert not (tmp_path / "pwned").exists()
    (root / "transcription_validation.pkl").write_bytes(clean)
    for hostile in (pickle.dumps(type), pickle.dumps(Path("x"))):  # a class, an arbitrary object
        (root / "annotation_test.pkl").write_bytes(hostile)
        with pytest.raises(DataError, match="annotation_test.pkl: refused to build"):
            prepare("firstimpressions", root, opts(tmp_path))


def test_a_trial_list_naming_a_missing_file(layout, tmp_path):
    root = layout("voxceleb1")
    with (root / "veri_test2.txt").open("a") as f:
        f.write("1 id10270/1zcIwhmdeo4/00001.wav id10270/nOpE/00009.wav\n")
    with pytest.raises(DataError, match=f"{root / 'veri_test2.txt'} line 5: id10270/nOpE/00009.wav is not a sample"):
        prepare("voxceleb1", root, opts(tmp_path))
    prepared = prepare("voxceleb1", root, opts(tmp_path, on_error="skip"))
    assert prepared.skipped == {"trial names a missing file": 1} and len(prepared.meta.trials["vox1-o"]) == 4


def test_iden_split_naming_a_missing_file_is_named_with_its_line(layout, tmp_path):
    root = layout("voxceleb1")
    (root / "wav" / "id10002" / "1zcIwhmdeo4" / "00001.wav").unlink()
    with pytest.raises(
        DataError, match=f"{root / 'iden_split.txt'} line 5: id10002/1zcIwhmdeo4/00001.wav is not under"
    ):
        prepare("voxceleb1", root, opts(tmp_path))


def test_the_manifest_appears_atomically(layout, tmp_path, monkeypatch):
    root = layout("librispeech")
    out = tmp_path / "out" / "m.csv"
    prepare("librispeech", root, opts(tmp_path))
    before = out.read_bytes()

    def fail(self, rows):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(OSError, match="disk full"):
        prepare("librispeech", root, opts(tmp_path))
    assert out.read_bytes() == before  # the old manifest, whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.csv", "m.meta.json"]  # no temporary file left


def test_the_command_line(layout, tmp_path, capsys):
    root = layout("voxceleb1")
    out = tmp_path / "vox1.csv"
    script = str(ROOT / "experiments" / "prepare.py")
    done = subprocess.run([sys.executable, script, "voxceleb1", "--root", str(root), "--out", str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and f"wrote {out}: 20 samples of 5 identities" in done.stdout
    assert main(["voxceleb1", "--root", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_join_without_faces_says_so(layouts_source, tmp_path):
    with pytest.raises(DataError, match="needs the face dataset's folder: give --faces"):
        prepare("voxceleb2-vggface2", layouts_source["voxceleb2"][0], opts(tmp_path))
