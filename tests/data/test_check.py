"""`prepare.py check`: the report's counts against the fixture's own spec, parallel = serial, and every kind
of problem named with its file and line."""

import dataclasses
import json
from collections import Counter

from experiments.prepare import main, prepare
from research.data import manifest
from research.data.check import check, format_report
from research.data.datasets.common import Options
from tests.data import layouts

GENDER = {"m": "male", "f": "female"}


def vox1_manifest(root, tmp_path):
    out = tmp_path / "vox1.csv"
    prepare("voxceleb1", root, Options(out, progress=False))
    return out


def test_the_report_counts_what_the_fixture_holds(layouts_source, tmp_path):
    root, spec = layouts_source["voxceleb1"]
    report = check(vox1_manifest(root, tmp_path), progress=False)
    assert report.problems == [] and report.rows == len(spec["files"])
    meta = {p[0]: p for p in layouts.VOX1}
    for split in ("train", "val", "test"):
        subjects = [s for s, part in spec["files"].values() if part == split]
        assert report.splits["split"][split] == {"samples": len(subjects), "subjects": len(set(subjects))}
        opened = [s for s, _ in spec["files"].values() if layouts.VOX1_OPEN[s] == split]
        assert report.splits["open_split"][split] == {"samples": len(opened), "subjects": len(set(opened))}
        assert report.attributes["gender"][split] == Counter(GENDER[meta[s][2]] for s in subjects)
        pairs = Counter(f"{GENDER[meta[s][2]]}+{meta[s][3]}" for s in subjects)
        assert report.pairs["gender+nationality"][split] == pairs
    assert report.present == {"face": 0, "voice": 20, "text": 0} and report.trials == {"vox1-o": 4, "vox1-e": 2}
    assert abs(report.voice_seconds - 20 * layouts.SECONDS) < 1e-6
    assert "gender+nationality" in format_report(report)


def test_two_workers_give_the_same_report(layouts_source, tmp_path):
    root = layouts_source["librispeech"][0]
    out = tmp_path / "ls.csv"
    prepare("librispeech", root, Options(out, progress=False))
    one, two = check(out, progress=False), check(out, workers=2, progress=False)
    assert format_report(one) == format_report(two) and one.present["text"] == 15


def test_every_problem_is_named(layout, tmp_path, capsys):
    root = layout("voxceleb1")
    out = vox1_manifest(root, tmp_path)
    rows = manifest.read(out)
    bad = rows[3]
    (out.parent / bad.voice).write_bytes(b"garbage" * 20)
    moved = next(r for r in rows if r.subject == "id10001" and r.split == "train")
    rows = [dataclasses.replace(r, open_split="test") if r.id == moved.id else r for r in rows]
    side = json.loads(manifest.meta_path(out).read_text())
    side["trials"]["vox1-o"].append([1, "id10270/1zcIwhmdeo4/00001.wav", "nope.wav"])
    manifest.write(out, rows)
    manifest.meta_path(out).write_text(json.dumps(side))
    report = check(out, progress=False)
    text = "\n".join(report.problems)
    assert f"unreadable voice file {(out.parent / bad.voice)}" in text and f"{out} line {bad.line}" in text
    assert "subject 'id10001' is in several open splits ['test', 'train']" in text
    assert "trial 5 of list 'vox1-o' names unknown 'nope.wav'" in text and len(report.problems) == 3
    assert main(["check", str(out)]) == 1 and "3 problem(s)" in capsys.readouterr().out


def test_check_reports_a_nan_sample_as_the_run_would(layout, tmp_path, capsys):
    import numpy as np
    import soundfile

    out = vox1_manifest(layout("voxceleb1"), tmp_path)
    bad = manifest.read(out)[2]
    audio, rate = soundfile.read(out.parent / bad.voice, dtype="float32")
    audio[5] = np.nan
    soundfile.write(out.parent / bad.voice, audio, rate, subtype="FLOAT")
    report = check(out, progress=False)
    assert report.problems == [
        f"voice file {out.parent / bad.voice} has non-finite samples (NaN or inf) (manifest {out} line {bad.line}, "
        f"sample '{bad.id}')"
    ]
    assert main(["check", str(out)]) == 1 and "1 problem(s)" in capsys.readouterr().out


def test_check_of_a_manifest_not_in_utf8_is_one_line_and_exit_2(layouts_source, tmp_path, capsys):
    out = vox1_manifest(layouts_source["voxceleb1"][0], tmp_path)
    lines = out.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"id1", b"\xe9d1", 1)
    out.write_bytes(b"\n".join(lines))
    assert main(["check", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: manifest {out} line 3: not UTF-8 (byte 0xe9); save the file as UTF-8\n"
