"""LibriSpeech (Panayotov et al. 2015) from its distributed layout. The root (the LibriSpeech folder) holds:

    SPEAKERS.TXT                         ';' comment lines, then "ID | SEX | SUBSET | MINUTES | NAME" (F/M;
                                         the name may itself contain '|')
    <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac            e.g. train-clean-100/19/198/19-198-0001.flac
    <subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt             "<speaker>-<chapter>-<utt> TRANSCRIPT"

Every sample is an utterance with its voice and its transcript (inline in the manifest). Subsets have
disjoint speakers, which gives the open split: train-* -> train, dev-* -> val, test-* -> test. Closed
split: each speaker's utterances (in id order) ~80/10/10. Attribute `subset`; group is "all".
"""

from __future__ import annotations

import re
from pathlib import Path

from research.data import decode
from research.data.datasets.common import Options, Prepared, Skips, closed_splits, gender, need, probe_all, relative
from research.data.manifest import DataError, Meta, Row

SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
OPEN = {"train": "train", "dev": "val", "test": "test"}


def speakers(path: Path) -> dict[str, dict[str, str]]:
    """Speaker id -> {"gender", "subset", "name"} from SPEAKERS.TXT."""
    found = {}
    for line, text in enumerate(need(path, "SPEAKERS.TXT").read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in text.split("|", 4)]
        if len(fields) != 5:
            raise DataError(f"{path} line {line}: expected 'ID | SEX | SUBSET | MINUTES | NAME', got {text!r}")
        found[fields[0]] = {"gender": gender(fields[1], f"{path} line {line}"), "subset": fields[2], "name": fields[4]}
    return found


def transcripts(folder: Path, skip: Skips) -> dict[str, str]:
    """Utterance id -> transcript, from every <speaker>-<chapter>.trans.txt of one chapter folder."""
    found = {}
    for path in sorted(folder.glob("*.trans.txt")):
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            key, _, words = text.strip().partition(" ")
            if key and not words.strip():
                skip("empty transcript", f"{path} line {line}: utterance {key} has an empty transcript")
            elif key:
                found[key] = words.strip()
    return found


def librispeech(root: Path, opts: Options) -> Prepared:
    people = speakers(root / "SPEAKERS.TXT")
    subsets = sorted(p for p in need(root, "the LibriSpeech folder").iterdir() if p.is_dir() and SUBSET.match(p.name))
    if not subsets:
        raise DataError(f"{root} holds no subset folder (train-clean-100, dev-clean, ...): not LibriSpeech's layout")
    paths = sorted(p for s in subsets for p in s.glob("*/*/*.flac"))
    probed = probe_all(paths, decode.probe_voice, opts, "flac")
    skip = Skips(opts.on_error)
    texts: dict[Path, dict[str, str]] = {}
    by_speaker: dict[str, list[tuple[str, Path, str]]] = {}
    for path, result in zip(paths, probed, strict=True):
        speaker, subset = path.parent.parent.name, path.parents[2].name
        if path.parent not in texts:
            texts[path.parent] = transcripts(path.parent, skip)
        if isinstance(result, DataError):
            skip("unreadable voice file", str(result))
        elif speaker not in people:
            skip("speaker not in SPEAKERS.TXT", f"{path}: speaker {speaker} is not in {root / 'SPEAKERS.TXT'}")
        elif path.stem not in texts[path.parent]:
            skip("utterance without a transcript", f"{path}: no line for {path.stem} in {path.parent}/*.trans.txt")
        else:
            by_speaker.setdefault(speaker, []).append((path.stem, path, subset))
    rows = []
    for speaker, utterances in by_speaker.items():
        for (key, path, subset), split in zip(utterances, closed_splits(len(utterances)), strict=True):
            part = OPEN[subset.split("-")[0]]
            rows.append(Row(key, speaker, split, part, "", relative(path, opts.out), "", "", people[speaker]["gender"],
                            "all", transcript=texts[path.parent][key], attributes={"subset": subset}))  # fmt: skip
    return skip.result(rows, Meta())
