"""Face + voice of the same people: VoxCeleb utterances paired with face images of the same identity.

    voxceleb1-vggface:   VoxCeleb1 (root) x VGGFace images (`--faces`), joined by vox1_meta.csv's
                         "VGGFace1 ID" column (the person's name). VGGFace is distributed as URL lists;
                         the adapter expects the downloaded images as <faces>/<name>/<image>.jpg.
    voxceleb2-vggface2:  VoxCeleb2 (root) x VGGFace2 (`--faces`, its own layout, loose boxes included),
                         joined by vox2_meta.csv's "VGGFace2 ID" column (the class).

Every utterance of an identity that has faces becomes one sample with a face: the identity's images in
name order, taken in turn (utterance k gets image k mod n). Identities without faces are dropped and
counted. The splits are the voice dataset's: the open split is identity-disjoint (VoxCeleb's test
identities are the test part), the split of face-voice matching (1:2 matching and verification on
unseen people, as in Nagrani et al. 2018 and the FAME challenge).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from research.data import decode
from research.data.datasets import vggface2, voxceleb
from research.data.datasets.common import Options, Prepared, need, probe_all, read_table, relative
from research.data.manifest import DataError


def voxceleb1_vggface(root: Path, opts: Options) -> Prepared:
    faces = need(_faces(opts), "the VGGFace images folder <name>/<image>.jpg (--faces)")
    name_of = {
        r["VoxCeleb1 ID"]: r["VGGFace1 ID"] for _, r in read_table(root / "vox1_meta.csv", voxceleb.VOX1_META, "\t")
    }
    paths = sorted(faces.glob("*/*.jpg"))
    if not paths:
        raise DataError(f"{faces} holds no <name>/<image>.jpg files: expected the VGGFace images")
    by_name: dict[str, list[tuple[str, str]]] = {}
    for path, result in zip(paths, probe_all(paths, decode.probe_face, opts, "jpg"), strict=True):
        if isinstance(result, DataError) and opts.on_error == "raise":
            raise result
        if not isinstance(result, DataError):
            by_name.setdefault(path.parent.name, []).append((relative(path, opts.out), ""))
    voices = voxceleb.voxceleb1(root, opts)
    return _join(voices, {s: by_name[n] for s, n in name_of.items() if n in by_name})


def voxceleb2_vggface2(root: Path, opts: Options) -> Prepared:
    faces = vggface2.vggface2(need(_faces(opts), "the VGGFace2 folder (--faces)"), opts)
    by_class: dict[str, list[tuple[str, str]]] = {}
    for r in faces.rows:
        by_class.setdefault(r.subject, []).append((r.face, r.box))
    class_of = {r["VoxCeleb2 ID"]: r["VGGFace2 ID"] for _, r in read_table(root / "vox2_meta.csv", voxceleb.VOX2_META)}
    voices = voxceleb.voxceleb2(root, opts)
    joined = _join(voices, {s: by_class[c] for s, c in class_of.items() if c in by_class})
    joined.skipped |= {f"faces: {k}": v for k, v in faces.skipped.items()}
    return joined


def _faces(opts: Options) -> Path:
    if opts.faces is None:
        raise DataError("a face + voice join needs the face dataset's folder: give --faces DIR")
    return opts.faces


def _join(voices: Prepared, faces: dict[str, list[tuple[str, str]]]) -> Prepared:
    """Give every utterance of an identity with faces one of its faces (in turn); drop the others."""
    rows, dropped, turn = [], 0, {}
    for r in voices.rows:
        if r.subject not in faces:
            dropped += 1
            continue
        k = turn[r.subject] = turn.get(r.subject, -1) + 1
        face, box = faces[r.subject][k % len(faces[r.subject])]
        rows.append(dataclasses.replace(r, face=face, box=box))
    if not rows:
        raise DataError("no identity of the voice dataset has faces in the face dataset: check --faces")
    skipped = voices.skipped | ({"utterance of an identity without faces": dropped} if dropped else {})
    trials = {name: pairs for name, pairs in voices.meta.trials.items() if _covered(pairs, {r.id for r in rows})}
    return Prepared(rows, dataclasses.replace(voices.meta, trials=trials), {}, skipped, voices.problems)


def _covered(pairs: list[tuple[int, str, str]], ids: set[str]) -> bool:
    return all(a in ids and b in ids for _, a, b in pairs)
