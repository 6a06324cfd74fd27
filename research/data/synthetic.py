"""The embedded "synthetic persons" dataset: faces (PNG), voices (WAV), transcripts (TXT) and a manifest.

Every identity has latent traits per modality (faces.py, voices.py, transcripts.py) plus a gender, an age
bin and a group label. Each modality also shows a group *code* (face: colour of the edge bars, voice:
frequency of a beeping tone, text: a code word); `syn.carry` decides which codes equal the label:

    redundant         every modality shows the group
    face/voice/text   only that modality shows it; the others show codes independent of the label
    synergy           face shows a, voice shows b, group = (a + b) mod K; text shows an independent code

Codes are per identity. Within each part of the identity-disjoint split they are assigned by counting
in base K (the digits of an identity's position are its three codes), so every code combination is
equally frequent in train, val and test: exactly for pairs of codes when a part's size is a multiple of
K^2, for all three when it is a multiple of K^3. A modality whose code is not the label then carries no
information about it, in each split and not only on average.
Everything is a pure function of the seed: the same config gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from research.config import MODALITIES, DataConfig, SyntheticConfig
from research.data import faces, manifest, transcripts, voices

VERSION = 1  # bump when the generated files change, so that cached datasets are rebuilt
_EXTENSIONS = {"face": "png", "voice": "wav", "text": "txt"}
# Which modality shows which base-K digit of an identity's position: the label's carrier comes first.
_DIGIT_ORDER = {
    "redundant": MODALITIES,
    "synergy": MODALITIES,
    "face": ("face", "voice", "text"),
    "voice": ("voice", "face", "text"),
    "text": ("text", "face", "voice"),
}


@dataclass(frozen=True)
class Person:
    """One identity's latent description."""

    subject: str
    female: bool
    age: int  # index into manifest.AGE_BINS
    group: int  # the label
    codes: dict[str, int]  # group code shown by each modality
    open_split: str  # identity-disjoint split
    face: faces.FaceTraits
    voice: voices.VoiceTraits
    text: transcripts.TextTraits


def people(syn: SyntheticConfig) -> list[Person]:
    """The identities of a synthetic dataset, with their latent traits and codes."""
    k = syn.groups
    if not 1 <= k <= len(transcripts.CODE_WORDS):
        raise ValueError(f"synthetic.groups must be in 1..{len(transcripts.CODE_WORDS)}, got {k}")
    rng = np.random.default_rng([syn.seed, 1])
    order = rng.permutation(syn.identities)
    parts = _open_parts(syn.identities, k)
    width = len(str(syn.identities - 1))
    persons = [None] * syn.identities
    for part, members in zip(manifest.SPLITS, np.split(order, np.cumsum(parts)[:-1]), strict=True):
        start = rng.integers(k**3)  # a random start, so that an incomplete cycle favours no code
        for position, i in enumerate(members, start=start):
            digits = [(position // k**d) % k for d in range(3)]  # counting in base K
            if syn.carry == "redundant":
                digits = [digits[0]] * 3
            codes = dict(zip(_DIGIT_ORDER[syn.carry], digits, strict=True))
            group = (codes["face"] + codes["voice"]) % k if syn.carry == "synergy" else digits[0]
            persons[i] = _person(syn, int(i), f"p{i:0{width}d}", group, codes, part)
    return persons


def _person(syn: SyntheticConfig, i: int, subject: str, group: int, codes: dict, part: str) -> Person:
    rng = np.random.default_rng([syn.seed, 0, i])
    female, age = bool(rng.random() < 0.5), int(rng.integers(len(manifest.AGE_BINS)))
    return Person(
        subject=subject,
        female=female,
        age=age,
        group=group,
        codes=codes,
        open_split=part,
        face=faces.sample_traits(rng, female, age, faces.code_colour(codes["face"], syn.groups)),
        voice=voices.sample_traits(rng, female, age, voices.code_tone(codes["voice"], syn.groups)),
        text=transcripts.sample_traits(rng, female, age, codes["text"]),
    )


def _open_parts(n: int, k: int) -> list[int]:
    """Identities per open split part, ~60/20/20 with at least one in val and test.

    Val and test sizes are rounded to a multiple of K^2 when there are enough identities, so that every
    (face code, voice code) pair, hence every (code, label) pair, is equally frequent in them.
    """
    unit = k * k if n >= 5 * k * k else 1
    val = test = max(unit, round(0.2 * n / unit) * unit)
    return [n - val - test, val, test]


def _closed_splits(rng: np.random.Generator, samples: int) -> list[str]:
    """Split labels for one identity's samples, ~60/20/20 in random order."""
    val = max(1, round(0.2 * samples))
    labels = ["train"] * (samples - 2 * val) + ["val"] * val + ["test"] * val
    return [labels[j] for j in rng.permutation(samples)]


def generate(syn: SyntheticConfig, folder: str | Path, image_size: int, voice_seconds: float, sample_rate: int) -> Path:
    """Write the dataset's files and manifest.csv into `folder`; return the manifest path."""
    if syn.samples_per_identity < 3:
        raise ValueError(f"synthetic.samples_per_identity must be at least 3, got {syn.samples_per_identity}")
    folder = Path(folder)
    for modality in MODALITIES:
        (folder / modality).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, p in enumerate(people(syn)):
        splits = _closed_splits(np.random.default_rng([syn.seed, 2, i]), syn.samples_per_identity)
        for j, split in enumerate(splits):
            rngs = [np.random.default_rng([syn.seed, 3, i, j, m]) for m in range(4)]
            present = _present(rngs[3], syn.missing)
            name = f"{p.subject}_{j:02d}"
            paths = {m: f"{m}/{name}.{_EXTENSIONS[m]}" if present[m] else "" for m in MODALITIES}
            if present["face"]:
                Image.fromarray(faces.render(p.face, image_size, syn.noise, rngs[0])).save(folder / paths["face"])
            if present["voice"]:
                audio = voices.render(p.voice, voice_seconds, sample_rate, syn.noise, rngs[1])
                _write_wav(folder / paths["voice"], audio, sample_rate)
            if present["text"]:
                text = transcripts.render(p.text, syn.noise, rngs[2])
                (folder / paths["text"]).write_text(text + "\n", encoding="utf-8")
            gender = "female" if p.female else "male"
            labels = {"age": manifest.AGE_BINS[p.age], "gender": gender, "group": f"g{p.group}"}
            rows.append(manifest.Row(name, p.subject, split, p.open_split, **paths, **labels))
    return manifest.write(folder / "manifest.csv", rows)


def _present(rng: np.random.Generator, missing: float) -> dict[str, bool]:
    """Drop each modality with probability `missing`, but never all three."""
    absent = rng.random(3) < missing
    if absent.all():
        absent[rng.integers(3)] = False
    return {m: not a for m, a in zip(MODALITIES, absent, strict=True)}


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV with the standard library."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(np.round(audio * 32767).astype("<i2").tobytes())


def ensure(cfg: DataConfig) -> Path:
    """Generate the configured synthetic dataset under cfg.root unless it is cached; return its manifest.

    The folder name is a hash of everything that changes the files, so a config change builds a new
    dataset and a repeated call returns at once. Files are written to a temporary folder and renamed
    into place, so an interrupted run never leaves a half-written dataset behind.
    """
    key = {
        "version": VERSION,
        "synthetic": asdict(cfg.synthetic),
        "image_size": cfg.image_size,
        "voice_seconds": cfg.voice_seconds,
        "sample_rate": cfg.sample_rate,
    }
    text = json.dumps(key, sort_keys=True)
    root = Path(cfg.root)
    folder = root / f"synthetic-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    path = folder / "manifest.csv"
    if path.is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        generate(cfg.synthetic, tmp, cfg.image_size, cfg.voice_seconds, cfg.sample_rate)
        (tmp / "dataset.json").write_text(text + "\n")
        try:
            tmp.rename(folder)
        except OSError:
            if not path.is_file():  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing left to remove after a rename
    return path
