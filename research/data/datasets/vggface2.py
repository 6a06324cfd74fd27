"""VGGFace2 (Cao et al. 2018) from its distributed layout. The root holds:

    train/<class>/<image>.jpg, test/<class>/<image>.jpg     loosely cropped faces, class = n<6 digits>
    identity_meta.csv          "Class_ID, Name, Sample_Num, Flag, Gender" (comma + space separated,
                               names quoted; Flag 1 = training set, 0 = test set; Gender m/f)
    bb_landmark/loose_bb_train.csv, bb_landmark/loose_bb_test.csv (optional)
                               "NAME_ID,X,Y,W,H" with NAME_ID = <class>/<image> (no suffix): the face box

A sample's id is <class>/<image> as the box files name it. With the box files every image must have a
box (the loader crops it before resizing); without them faces are used whole. Open split: the test
folder's identities are the test part, a share (`val_fraction`) of the training identities is val.
Closed split: each identity's images (in name order) ~80/10/10. group is "all".
"""

from __future__ import annotations

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
    read_table,
    relative,
)
from research.data.manifest import DataError, Meta, Row

IDENTITY_META = ("Class_ID", "Name", "Sample_Num", "Flag", "Gender")
BOXES = ("NAME_ID", "X", "Y", "W", "H")


def identities(path: Path) -> dict[str, dict[str, str]]:
    """Class -> {"name", "gender"} from identity_meta.csv."""
    found = {}
    for line, record in read_table(need(path, "identity_meta.csv"), IDENTITY_META):
        found[record["Class_ID"]] = {"name": record["Name"], "gender": gender(record["Gender"], f"{path} line {line}")}
    return found


def boxes(root: Path) -> dict[str, str] | None:
    """<class>/<image> -> "x y w h" from bb_landmark/loose_bb_{train,test}.csv (None without the folder)."""
    folder = root / "bb_landmark"
    if not folder.is_dir():
        return None
    found = {}
    for part in ("train", "test"):
        path = folder / f"loose_bb_{part}.csv"
        if not path.is_file():
            continue
        for line, record in read_table(path, BOXES):
            try:
                x, y, w, h = (float(record[k]) for k in BOXES[1:])
            except ValueError:
                raise DataError(f"{path} line {line}: box values must be numbers, got {record}") from None
            if w <= 0 or h <= 0 or x < -w or y < -h:
                raise DataError(f"{path} line {line}: bad box {x, y, w, h}")
            found[record["NAME_ID"]] = f"{max(x, 0):g} {max(y, 0):g} {w:g} {h:g}"
    return found


def images(root: Path, opts: Options) -> tuple[dict[str, Path], dict[str, DataError], dict[str, str]]:
    """Every <part>/<class>/<image>.jpg, probed in parallel: (id -> path, id -> why unreadable, id -> part)."""
    parts = [p for p in ("train", "test") if (root / p).is_dir()]
    paths = sorted(p for part in parts for p in (root / part).glob("*/*.jpg"))
    if not paths:
        raise DataError(f"{root} holds no train|test/<class>/<image>.jpg files: not VGGFace2's layout")
    found, errors, part_of = {}, {}, {}
    for path, result in zip(paths, probe_all(paths, decode.probe_face, opts, "jpg"), strict=True):
        key = f"{path.parent.name}/{path.stem}"
        part_of[key] = path.parent.parent.name
        if isinstance(result, DataError):
            errors[key] = result
        else:
            found[key] = path
    return found, errors, part_of


def vggface2(root: Path, opts: Options) -> Prepared:
    people = identities(root / "identity_meta.csv")
    box = boxes(root)
    found, errors, part_of = images(need(root, "the VGGFace2 folder"), opts)
    skip = Skips(opts.on_error)
    by_class: dict[str, list[str]] = {}
    for key in sorted([*found, *errors]):
        subject = key.split("/")[0]
        if subject not in people:
            skip(
                "class not in identity_meta.csv",
                f"{root / part_of[key] / key}.jpg: class {subject} is not in {root}/identity_meta.csv",
            )
        elif key in errors:
            skip("unreadable face file", str(errors[key]))
        elif box is not None and key not in box:
            skip("image without a loose box", f"{found[key]}: no box for '{key}' in {root}/bb_landmark")
        else:
            by_class.setdefault(subject, []).append(key)
    test = {s for s, keys in by_class.items() if part_of[keys[0]] == "test"}
    parts = open_splits(by_class, test, opts.val_fraction)
    rows = []
    for subject, keys in by_class.items():
        for key, split in zip(keys, closed_splits(len(keys)), strict=True):
            face = relative(found[key], opts.out)
            rows.append(Row(key, subject, split, parts[subject], face, "", "", "", people[subject]["gender"], "all",
                            box=box[key] if box else ""))  # fmt: skip
    return skip.result(rows, Meta())
