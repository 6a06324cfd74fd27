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
