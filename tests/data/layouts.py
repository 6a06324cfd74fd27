"""Tiny copies of real datasets in their distributed layouts and formats, for the adapter tests and the
prepare benchmark. Every writer returns the spec it wrote, from which tests derive the expected rows.

Formats: WAV (VoxCeleb1) and FLAC (LibriSpeech) with soundfile, .m4a AAC (VoxCeleb2) and .mp4 H.264 + AAC
(First Impressions) with PyAV, JPEG faces with Pillow, meta files with the real columns and separators.
Each identity's voice is a tone at its own frequency (`tone(subject)`), so decoded audio can be checked.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image

RATE, SECONDS = 16000, 0.3


def tone(subject: str) -> float:
    """The frequency (Hz) of a subject's voice: 300..1500 Hz on a 50 Hz grid, fixed by the name."""
    return 300.0 + 50.0 * (zlib.crc32(subject.encode()) % 25)


def wave(subject: str, rate: int = RATE, seconds: float = SECONDS, channels: int = 1) -> np.ndarray:
    """(S, channels) float32 tone of a subject plus a little noise."""
    t = np.arange(round(rate * seconds)) / rate
    x = 0.4 * np.sin(2 * np.pi * tone(subject) * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def write_m4a(path: Path, audio: np.ndarray, rate: int) -> None:
    """AAC in an MPEG-4 audio container (VoxCeleb2's .m4a)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = "mono" if audio.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp", layout=layout)
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def write_mp4(path: Path, levels: list[int], fps: int, audio: np.ndarray, rate: int, size: int = 32) -> None:
    """H.264 video (frame k is uniformly grey at levels[k]) + AAC mono audio, as First Impressions' clips."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size, size, "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="mono")
        for level in levels:
            image = np.full((size, size, 3), level, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp", layout="mono")
        frame.rate = rate
        for packet in [*sound.encode(frame), *sound.encode(None)]:
            container.mux(packet)


def write_face(path: Path, box: tuple[int, int, int, int], colour: tuple[int, int, int], size=(48, 40)) -> None:
    """A grey JPEG with the face box filled with `colour`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), 128, np.uint8)
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = colour
    Image.fromarray(pixels).save(path, quality=95)


# VoxCeleb1: (id, VGGFace1 name, gender, nationality, set)
VOX1 = [
    ("id10001", "A.J._Buckley", "m", "Ireland", "dev"),
    ("id10002", "A.R._Rahman", "m", "India", "dev"),
    ("id10003", "Aamir_Khan", "f", "New Zealand", "dev"),
    ("id10270", "Zac_Efron", "m", "USA", "test"),
    ("id10271", "Zoe_Saldana", "f", "USA", "test"),
]
VOX1_OPEN = {"id10001": "train", "id10002": "train", "id10003": "val", "id10270": "test", "id10271": "test"}


def voxceleb1(root: Path, scale: int = 1) -> dict:
    """wav/<id>/<video>/<utt>.wav (2 videos x 2 `scale` utterances each), vox1_meta.csv, iden_split.txt,
    veri_test2.txt, list_test_all2.txt.
    Returns {"files": {id: (subject, iden split)}, "trials": {name: [(t, a, b)]}}."""
    lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"] + ["\t".join(p) for p in VOX1]
    root.mkdir(parents=True, exist_ok=True)
    (root / "vox1_meta.csv").write_text("\n".join(lines) + "\n")
    files, iden = {}, []
    for subject, *_ in VOX1:
        for v, video in enumerate(("1zcIwhmdeo4", "7w0IBEWc9Qw")):
            for u in range(1, 2 * scale + 1):
                name = f"{subject}/{video}/{u:05d}.wav"
                (root / "wav" / name).parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(root / "wav" / name, wave(subject), RATE, subtype="PCM_16")
                split = "1" if v == 0 else ("2" if u % 2 else "3")
                iden.append(f"{split} {name}")
                files[name] = (subject, {"1": "train", "2": "val", "3": "test"}[split])
    (root / "iden_split.txt").write_text("\n".join(iden) + "\n")
    o = [(1, "id10270/1zcIwhmdeo4/00001.wav", "id10270/7w0IBEWc9Qw/00002.wav"),
         (0, "id10270/1zcIwhmdeo4/00001.wav", "id10271/1zcIwhmdeo4/00002.wav"),
         (1, "id10271/1zcIwhmdeo4/00001.wav", "id10271/7w0IBEWc9Qw/00001.wav"),
         (0, "id10271/7w0IBEWc9Qw/00002.wav", "id10270/7w0IBEWc9Qw/00001.wav")]  # fmt: skip
    e = [(1, "id10001/1zcIwhmdeo4/00001.wav", "id10001/7w0IBEWc9Qw/00001.wav"),
         (0, "id10002/1zcIwhmdeo4/00002.wav", "id10270/1zcIwhmdeo4/00001.wav")]  # fmt: skip
    for filename, pairs in (("veri_test2.txt", o), ("list_test_all2.txt", e)):
        (root / filename).write_text("".join(f"{t} {a} {b}\n" for t, a, b in pairs))
    return {"files": files, "trials": {"vox1-o": o, "vox1-e": e}}


# VoxCeleb2 + VGGFace2: (vox2 id, VGGFace2 class, name, gender, vox2 set)
VOX2 = [
    ("id00012", "n000012", "Some, Name", "m", "dev"),
    ("id00015", "n000015", "Another_Person", "f", "dev"),
    ("id00017", "n000017", "Third_Person", "f", "dev"),
    ("id09999", "n009999", "Test_Person", "m", "test"),
]


def voxceleb2(root: Path, scale: int = 1) -> dict:
    """dev|test/aac/<id>/<video>/<utt>.m4a (3 `scale` utterances; every third at 44.1 kHz stereo), vox2_meta.csv (padded
    columns, as distributed). Returns {"files": {id: (subject, part)}}."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set "] + [f"{v} ,{c} ,{g} ,{s} " for v, c, _, g, s in VOX2]
    (root / "vox2_meta.csv").write_text("\n".join(lines) + "\n")
    files = {}
    for subject, _, _, _, part in VOX2:
        for u, video in enumerate(("21Uxsk56VDQ", "21Uxsk56VDQ", "KZcfQvdKYIw") * scale):
            name = f"{subject}/{video}/{u + 1:05d}.m4a"
            odd = u % 3 == 2  # another rate and channel count: resampled and mixed down
            write_m4a(root / part / "aac" / name, wave(subject, 44100 if odd else RATE, channels=2 if odd else 1),
                      44100 if odd else RATE)  # fmt: skip
            files[name] = (subject, part)
    return {"files": files}


def face_box(key: str) -> tuple[int, int, int, int]:
    k = zlib.crc32(key.encode()) % 5
    return (4 + k, 3 + k, 20, 24)


def face_colour(subject: str) -> tuple[int, int, int]:
    k = zlib.crc32(subject.encode())
    return (40 + k % 200, 40 + (k >> 8) % 200, 40 + (k >> 16) % 200)


def vggface2(root: Path, scale: int = 1) -> dict:
    """train|test/<class>/<image>.jpg (3 `scale` images each), identity_meta.csv (", " separated, quoted names),
    bb_landmark/loose_bb_{train,test}.csv. Returns {"files": {id: (class, part, box)}}."""
    root.mkdir(parents=True, exist_ok=True)
    meta = ["Class_ID, Name, Sample_Num, Flag, Gender"]
    boxes = {"train": ["NAME_ID,X,Y,W,H"], "test": ["NAME_ID,X,Y,W,H"]}
    files = {}
    for _, cls, name, gender, vox_set in VOX2:
        part = "train" if vox_set == "dev" else "test"
        meta.append(f'{cls}, "{name}", 3, {int(part == "train")}, {gender}')
        for image in ("0001_01", "0002_01", "0010_02", *(f"{100 + k:04d}_01" for k in range(3 * scale - 3))):
            key = f"{cls}/{image}"
            box = face_box(key)
            write_face(root / part / f"{key}.jpg", box, face_colour(cls))
            boxes[part].append(f'"{key}",{box[0]},{box[1]},{box[2]},{box[3]}')
            files[key] = (cls, part, box)
    (root / "identity_meta.csv").write_text("\n".join(meta) + "\n")
    (root / "bb_landmark").mkdir(exist_ok=True)
    for part, lines in boxes.items():
        (root / "bb_landmark" / f"loose_bb_{part}.csv").write_text("\n".join(lines) + "\n")
    return {"files": files}


def vggface(root: Path) -> dict:
    """VGGFace (v1) images downloaded per name: <name>/<image>.jpg for three of the VoxCeleb1 people."""
    files = {}
    for _, name, *_ in VOX1[1:4]:
        for image in ("00000001", "00000002"):
            write_face(root / name / f"{image}.jpg", (0, 0, 48, 40), face_colour(name))
            files[f"{name}/{image}"] = name
    return {"files": files}


# LibriSpeech: (speaker, sex, subset, name)
SPEAKERS = [("19", "F", "train-clean-100", "Kara Shallenberg"), ("26", "M", "train-clean-100", "Denny Sayers"),
            ("60", "M", "train-clean-100", "|CBW|Simon"), ("84", "F", "dev-clean", "Christie Nowak"),
            ("61", "M", "test-clean", "Paul-Gabriel Wiener")]  # fmt: skip


def librispeech(root: Path, scale: int = 1) -> dict:
    """SPEAKERS.TXT, <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac (3 `scale` utterances) and
    <speaker>-<chapter>.trans.txt. Returns {"files": {id: (speaker, subset, transcript)}}."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["; Some comments", ";ID  |SEX| SUBSET           |MINUTES| NAME"]
    lines += [f"{s:<5}| {x} | {sub:<16} | 25.03 | {name}" for s, x, sub, name in SPEAKERS]
    (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    files = {}
    for speaker, _, subset, _ in SPEAKERS:
        chapter = f"{int(speaker) * 7 + 100}"
        folder = root / subset / speaker / chapter
        folder.mkdir(parents=True)
        text = []
        for u in range(3 * scale):
            key = f"{speaker}-{chapter}-{u:04d}"
            soundfile.write(folder / f"{key}.flac", wave(speaker), RATE)
            words = f"CHAPTER {u} SPEAKER {speaker} SAYS HELLO"
            text.append(f"{key} {words}")
            files[key] = (speaker, subset, words)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(text) + "\n")
    return {"files": files}


# First Impressions: (video, youtube id, partition, ethnicity code, gender code, age group)
VIDEOS = [("J4GQm9j0JZ0.003.mp4", "J4GQm9j0JZ0", "training", "2", "1", "4"),
          ("J4GQm9j0JZ0.005.mp4", "J4GQm9j0JZ0", "validation", "2", "1", "4"),
          ("bqSmIyXcqXI.001.mp4", "bqSmIyXcqXI", "training", "1", "2", "5"),
          ("bqSmIyXcqXI.002.mp4", "bqSmIyXcqXI", "test", "1", "2", "5"),
          ("_uNup91ZYw0.002.mp4", "_uNup91ZYw0", "training", "3", "2", "8"),
          ("_uNup91ZYw0.004.mp4", "_uNup91ZYw0", "training", "3", "2", "8")]  # fmt: skip
FPS, CLIP = 5, 2.0  # the clips' frame rate and length (seconds)
TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "interview", "openness")


def level(k: int) -> int:
    """Grey level of frame k of every clip."""
    return 20 + 20 * k


def firstimpressions(root: Path, scale: int = 1) -> dict:
    """train-1/training80_01/*.mp4 etc. (each clip `scale` times, the copies in training), the annotation
    and transcription pickles (NumPy float64 scores), eth_gender_annotations_{dev,test}.csv (';'),
    age_annotations.csv. Returns {"videos": VIDEOS, "scores": {video: {trait: score}}, "texts": {video: text}}."""
    folders = {"training": "train-1/training80_01", "validation": "val-1/validation80_01", "test": "test-1/test80_01"}
    scores, texts = {}, {}
    copies = [  # <youtube id>.<clip number>.mp4, numbered from 100
        (f"{yt}.{100 + k * len(VIDEOS) + i}.mp4", yt, "training", *rest)
        for k in range(scale - 1)
        for i, (_, yt, _, *rest) in enumerate(VIDEOS)
    ]
    for video, yt, part, *_ in VIDEOS + copies:
        write_mp4(root / folders[part] / video, [level(k) for k in range(int(FPS * CLIP))], FPS, wave(yt, seconds=CLIP),
                  RATE)  # fmt: skip
        scores[video] = {t: np.float64(0.1 + 0.1 * i + 0.01 * len(scores)) for i, t in enumerate(TRAITS)}
        texts[video] = f"hello this is {yt} talking in {video}"
    for part in ("training", "validation", "test"):
        chosen = [v for v, _, p, *_ in VIDEOS + copies if p == part]
        annotation = {t: {v: scores[v][t] for v in chosen} for t in TRAITS}
        (root / f"annotation_{part}.pkl").write_bytes(pickle.dumps(annotation, protocol=2))
        (root / f"transcription_{part}.pkl").write_bytes(pickle.dumps({v: texts[v] for v in chosen}, protocol=2))
    for name, parts in (("dev", ("training", "validation")), ("test", ("test",))):
        lines = ["VideoName;YouTubeID;Ethnicity;Gender"] + [f"{v};{yt};{e};{g}" for v, yt, p, e, g, _ in VIDEOS + copies
                                                             if p in parts]  # fmt: skip
        (root / f"eth_gender_annotations_{name}.csv").write_text("\n".join(lines) + "\n")
    lines = ["VideoName;AgeGroup"] + [f"{v};{a}" for v, *_, a in VIDEOS + copies]
    (root / "age_annotations.csv").write_text("\n".join(lines) + "\n")
    return {"videos": VIDEOS, "scores": {v: {t: float(s) for t, s in d.items()} for v, d in scores.items()},
            "texts": texts}  # fmt: skip
