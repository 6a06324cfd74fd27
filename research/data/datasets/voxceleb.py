"""VoxCeleb1 and VoxCeleb2 (Nagrani et al. 2017, Chung et al. 2018) from their distributed layouts.

VoxCeleb1 (root holds):
    wav/<id>/<video>/<utt>.wav        16 kHz mono WAV
    vox1_meta.csv                     tab separated: VoxCeleb1 ID, VGGFace1 ID, Gender (m/f), Nationality, Set
    iden_split.txt                    "<1|2|3> <id>/<video>/<utt>.wav": closed-set identification train / val / test
    veri_test2.txt, list_test_all2.txt, list_test_hard2.txt (optional)
                                      "<1|0> <path a> <path b>": Vox1-O, Vox1-E, Vox1-H (cleaned lists)
VoxCeleb2 (root holds):
    dev/aac/<id>/<video>/<utt>.m4a, test/aac/<id>/<video>/<utt>.m4a     AAC
    vox2_meta.csv                     comma separated, padded: VoxCeleb2 ID, VGGFace2 ID, Gender, Set
    dev/mp4/<id>/<video>/<utt>.mp4, test/mp4/...   (optional, vox2_mp4) the videos: with `faces_from_video` each
                                      utterance's face is its video (a frame per read: research/data/frames.py)

A sample's id is its path under wav/ (VoxCeleb1) or under dev|test/aac/ (VoxCeleb2), as the trial
lists name it. Open split: the meta file's test identities are the test part; of the dev identities a
share (`val_fraction`) is val. VoxCeleb1's closed split is iden_split.txt; VoxCeleb2 has none, so each
identity's utterances (in path order) are split ~80/10/10. group is "all" (no group label).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from research.data import decode
from research.data.datasets.common import (
    Options,
    Prepared,
    Skips,
    closed_splits,
    gender,
    need,
    open_splits,
    probe_all,
    read_lines,
    read_table,
    relative,
)
from research.data.manifest import DataError, Meta, Row

VOX1_META = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")
VOX2_META = ("VoxCeleb2 ID", "VGGFace2 ID", "Gender", "Set")
IDEN_SPLIT = {"1": "train", "2": "val", "3": "test"}
TRIAL_LISTS = {"vox1-o": "veri_test2.txt", "vox1-e": "list_test_all2.txt", "vox1-h": "list_test_hard2.txt"}


def meta(path: Path, columns: tuple[str, ...], delimiter: str) -> dict[str, dict[str, str]]:
    """Identity -> its meta row (gender already mapped to female/male)."""
    found = {}
    for line, record in read_table(path, columns, delimiter):
        record["Gender"] = gender(record["Gender"], f"{path} line {line}")
        if record["Set"] not in ("dev", "test"):
            raise DataError(f"{path} line {line}: unknown Set '{record['Set']}' (expected dev or test)")
        found[record[columns[0]]] = record
    return found


def voxceleb1(root: Path, opts: Options) -> Prepared:
    wav = need(root / "wav", "VoxCeleb1's wav/<id>/<video>/<utt>.wav folder")
    people = meta(need(root / "vox1_meta.csv", "vox1_meta.csv"), VOX1_META, "\t")
    files, errors = _utterances(wav, "wav", opts)
    skip = Skips(opts.on_error)
    split = {}
    iden = root / "iden_split.txt"
    for line, (code, name) in read_lines(iden, 2, "'<1|2|3> <id>/<video>/<utt>.wav'"):
        if code not in IDEN_SPLIT:
            skip("bad iden_split line", f"{iden} line {line}: unknown split code '{code}' (expected 1, 2 or 3)")
        elif name not in files and name not in errors:
            skip("iden_split names a missing file", f"{iden} line {line}: {name} is not under {wav}")
        else:
            split[name] = IDEN_SPLIT[code]
    test = {s for s, m in people.items() if m["Set"] == "test"}
    parts = open_splits(people, test, opts.val_fraction)
    rows = []
    for name in sorted([*files, *errors]):
        subject = name.split("/")[0]
        if subject not in people:
            skip("identity not in vox1_meta.csv", f"{wav / name}: identity {subject} is not in vox1_meta.csv")
        elif name not in split:
            skip("file not in iden_split.txt", f"{wav / name} is not listed in {iden}")
        elif name in errors:
            skip("unreadable voice file", str(errors[name]))
        else:
            m = people[subject]
            voice = relative(wav / name, opts.out)
            attributes = {"nationality": m["Nationality"]}
            rows.append(Row(name, subject, split[name], parts[subject], "", voice, "", "", m["Gender"], "all",
                            attributes=attributes))  # fmt: skip
    ids = {r.id for r in rows}
    trials = {}
    for key, filename in TRIAL_LISTS.items():
        if (root / filename).is_file():
            trials[key] = _trials(root / filename, ids, skip)
    return skip.result(rows, Meta(trials=trials))


def voxceleb2(root: Path, opts: Options) -> Prepared:
    people = meta(need(root / "vox2_meta.csv", "vox2_meta.csv"), VOX2_META, ",")
    parts_found = [p for p in ("dev", "test") if (root / p / "aac").is_dir()]
    need(root / (parts_found[0] if parts_found else "dev") / "aac", "VoxCeleb2's dev|test/aac/<id>/<video>/<utt>.m4a")
    skip = Skips(opts.on_error)
    test = {s for s, m in people.items() if m["Set"] == "test"}
    parts = open_splits(people, test, opts.val_fraction)
    rows = []
    for part in parts_found:
        files, errors = _utterances(root / part / "aac", "m4a", opts)
        by_subject: dict[str, list[str]] = {}
        for name in sorted([*files, *errors]):
            subject = name.split("/")[0]
            if subject not in people:
                skip(
                    "identity not in vox2_meta.csv", f"{root / part / 'aac' / name}: {subject} is not in vox2_meta.csv"
                )
            elif name in errors:
                skip("unreadable voice file", str(errors[name]))
            else:
                by_subject.setdefault(subject, []).append(name)
        for subject, names in by_subject.items():
            for name, split in zip(names, closed_splits(len(names)), strict=True):
                voice = relative(root / part / "aac" / name, opts.out)
                face = _video(root / part, name, opts, skip)
                if face is not None:
                    gender_ = people[subject]["Gender"]
                    rows.append(Row(name, subject, split, parts[subject], face, voice, "", "", gender_, "all"))
    return skip.result(rows, Meta())


def voxceleb2_voxceleb1(root: Path, opts: Options) -> Prepared:
    """The usual speaker-verification protocol: train on VoxCeleb2 (`root`), test on all of VoxCeleb1
    (`opts.test_root`) with Vox1-O, Vox1-E and Vox1-H. Open split: VoxCeleb2's dev identities train / val,
    its test identities val, every VoxCeleb1 identity test. The closed split stays each dataset's own."""
    if opts.test_root is None:
        raise DataError("voxceleb2-voxceleb1 needs VoxCeleb1's folder: give --test-root DIR")
    train, test = voxceleb2(root, opts), voxceleb1(need(opts.test_root, "VoxCeleb1's folder (--test-root)"), opts)
    rows = [dataclasses.replace(r, open_split="val" if r.open_split == "test" else r.open_split) for r in train.rows]
    rows += [dataclasses.replace(r, open_split="test") for r in test.rows]
    skipped = {f"voxceleb2: {k}": v for k, v in train.skipped.items()}
    skipped |= {f"voxceleb1: {k}": v for k, v in test.skipped.items()}
    return Prepared(rows, test.meta, {}, skipped, train.problems + test.problems)


def _video(part: Path, name: str, opts: Options, skip: Skips) -> str | None:
    """The face of utterance `name` (<id>/<video>/<utt>.m4a under part/aac): "" without `faces_from_video`, else
    its video part/mp4/<id>/<video>/<utt>.mp4 (relative to the manifest); None when that is missing (skipped)."""
    if not opts.faces_from_video:
        return ""
    video = part / "mp4" / Path(name).with_suffix(".mp4")
    if not video.is_file():
        skip("missing face video", f"{video}: no video of {part / 'aac' / name} (vox2_mp4's layout: dev|test/mp4/)")
        return None
    return relative(video, opts.out)


def _utterances(folder: Path, suffix: str, opts: Options) -> tuple[dict[str, float], dict[str, DataError]]:
    """Every <id>/<video>/<utt>.<suffix> under `folder`, in path order, probed in parallel:
    (name -> seconds, name -> why it is unreadable)."""
    paths = sorted(folder.glob(f"*/*/*.{suffix}"))
    if not paths:
        raise DataError(f"{folder} holds no <id>/<video>/<utt>.{suffix} files: not the distributed layout")
    seconds, errors = {}, {}
    for path, result in zip(paths, probe_all(paths, decode.probe_voice, opts, suffix), strict=True):
        name = path.relative_to(folder).as_posix()
        if isinstance(result, DataError):
            errors[name] = result
        else:
            seconds[name] = result
    return seconds, errors


def _trials(path: Path, ids: set[str], skip: Skips) -> list[tuple[int, str, str]]:
    """An official list "<1|0> <a> <b>" whose files must all be samples of the manifest."""
    pairs = []
    for line, (target, a, b) in read_lines(path, 3, "'<1|0> <path a> <path b>'"):
        missing = [x for x in (a, b) if x not in ids]
        if target not in ("0", "1"):
            skip("bad trial line", f"{path} line {line}: target '{target}' is not 0 or 1")
        elif missing:
            skip("trial names a missing file", f"{path} line {line}: {missing[0]} is not a sample of the manifest")
        else:
            pairs.append((int(target), a, b))
    return pairs
