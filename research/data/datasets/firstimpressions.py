"""ChaLearn LAP First Impressions V2 (Ponce-Lopez et al. 2016; Escalante et al. 2020) as distributed. The root holds:

    **/<youtube id>.<clip>.mp4                       15 s clips (H.264 + AAC), in any sub-folders
    annotation_{training,validation,test}.pkl        {trait: {video name: score}}: the partition and the Big Five
                                                     + interview scores
    transcription_{training,validation,test}.pkl     {video name: transcript}
    eth_gender_annotations_{dev,test}.csv            "VideoName;YouTubeID;Ethnicity;Gender" (';' separated; Ethnicity
                                                     1 Asian, 2 Caucasian, 3 African-American; Gender 1 male, 2 female)
    age_annotations.csv (optional)                   "VideoName;AgeGroup" with ChaLearn's group ids 1..8 (below)

Each video gives one sample per 1 / `fps` seconds: the face is the frame at the middle of that window and
the voice the window's audio (both decoded from the .mp4 by the loader), the text the video's transcript.
Labels: subject = YouTube id (one person), gender, ethnicity, age in the dataset's own bins, and the six
scores as numeric columns. The closed split is the official partition (a subject may appear in more
than one part); the open split is identity-disjoint, subjects in sorted order ~60/20/20. group is "all".

The pickles are read with a restricted unpickler that builds only dicts, lists, tuples, strings and
numbers (and NumPy number scalars, which score tables often hold): a pickle asking for any other object,
which is how a tampered pickle would run code, is a DataError naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from research.data import decode
from research.data.datasets.common import Options, Prepared, Skips, need, probe_all, read_table, relative
from research.data.manifest import DataError, Meta, Row

PARTS = {"training": "train", "validation": "val", "test": "test"}
TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "interview", "openness")
ETHNICITY = {"1": "asian", "2": "caucasian", "3": "african-american"}
GENDER = {"1": "male", "2": "female"}
AGE_GROUPS = {"1": "0-6", "2": "7-13", "3": "14-18", "4": "19-24", "5": "25-32", "6": "33-45", "7": "46-60", "8": "61+"}


class _PlainData(pickle.Unpickler):
    """Unpickles plain containers, strings and numbers; any global but NumPy's scalar rebuild is refused."""

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy.core.multiarray", "scalar"): _numeric_scalar,
            ("numpy._core.multiarray", "scalar"): _numeric_scalar,
            ("numpy", "dtype"): _numeric_dtype,
            ("_codecs", "encode"): _latin1_bytes,  # how protocol 2 writes the bytes inside a NumPy scalar
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to build {module}.{name}: only plain data is allowed")
        return allowed[module, name]


def _latin1_bytes(text, encoding):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused a byte string that is not latin-1 text")
    return text.encode("latin1")


def _numeric_dtype(*args):
    found = np.dtype(*args)
    if found.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused to build a NumPy {found} value: only numbers are allowed")
    return found


def _numeric_scalar(dtype, data):
    if isinstance(data, str):  # a Python 2 pickle's byte string, decoded as latin-1 by the unpickler
        data = data.encode("latin1")
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise pickle.UnpicklingError("refused a NumPy scalar that is not a number")
    return np.frombuffer(data, dtype=dtype)[0].item()


def load_pickle(path: Path) -> object:
    """A pickle of plain data (Python 2 pickles' byte strings decoded as latin-1), or a DataError naming the file."""
    data = need(path, "a First Impressions pickle").read_bytes()
    try:
        return _PlainData(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(f"unsafe or unreadable pickle {path}: {err}") from None


def annotations(root: Path) -> tuple[dict[str, str], dict[str, dict[str, float]], dict[str, str]]:
    """(video -> partition, video -> {trait: score}, video -> transcript) from the six pickles."""
    part_of, scores, texts = {}, {}, {}
    for name, part in PARTS.items():
        path = root / f"annotation_{name}.pkl"
        table = load_pickle(path)
        if not isinstance(table, dict) or set(table) != set(TRAITS):
            raise DataError(f"{path}: expected {{trait: {{video: score}}}} with traits {', '.join(TRAITS)}")
        for trait, videos in table.items():
            for video, score in videos.items():
                part_of[video] = part
                scores.setdefault(video, {})[trait] = float(score)
        path = root / f"transcription_{name}.pkl"
        table = load_pickle(path)
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise DataError(f"{path}: expected {{video: transcript}}")
        texts |= table
    return part_of, scores, texts


def people(root: Path) -> dict[str, dict[str, str]]:
    """Video -> {"subject", "ethnicity", "gender", "age"} from the annotation tables."""
    found = {}
    for part in ("dev", "test"):
        path = root / f"eth_gender_annotations_{part}.csv"
        for line, r in read_table(path, ("VideoName", "YouTubeID", "Ethnicity", "Gender"), ";"):
            if r["Ethnicity"] not in ETHNICITY or r["Gender"] not in GENDER:
                raise DataError(f"{path} line {line}: unknown ethnicity '{r['Ethnicity']}' or gender '{r['Gender']}'")
            labels = {"ethnicity": ETHNICITY[r["Ethnicity"]], "gender": GENDER[r["Gender"]], "age": ""}
            found[r["VideoName"]] = {"subject": r["YouTubeID"], **labels}
    path = root / "age_annotations.csv"
    if path.is_file():
        for line, r in read_table(path, ("VideoName", "AgeGroup"), ";"):
            group = r["AgeGroup"].split(".")[0]
            if group not in AGE_GROUPS or r["VideoName"] not in found:
                raise DataError(f"{path} line {line}: unknown age group '{r['AgeGroup']}' or video '{r['VideoName']}'")
            found[r["VideoName"]]["age"] = AGE_GROUPS[group]
    return found


def firstimpressions(root: Path, opts: Options) -> Prepared:
    part_of, scores, texts = annotations(need(root, "the First Impressions folder"))
    who = people(root)
    videos = sorted(root.rglob("*.mp4"))
    if not videos:
        raise DataError(f"{root} holds no .mp4 videos: not the First Impressions layout")
    probed = probe_all(videos, decode.probe_video, opts, "mp4")
    skip = Skips(opts.on_error)
    subjects = sorted({who[v.name]["subject"] for v in videos if v.name in who})
    open_part = {s: ("train", "train", "train", "val", "test")[k % 5] for k, s in enumerate(subjects)}
    rows, numeric = [], {t: [] for t in TRAITS}
    for path, seconds in zip(videos, probed, strict=True):
        name = path.name
        if isinstance(seconds, DataError):
            skip("unreadable video", str(seconds))
            continue
        if name not in part_of or name not in who:
            skip("video without annotations", f"{path}: {name} is in no annotation pickle or ethnicity/gender table")
            continue
        person = who[name]
        for k in range(max(1, int(seconds * opts.fps))):
            start, end = k / opts.fps, min((k + 1) / opts.fps, seconds)
            media = relative(path, opts.out)
            rows.append(Row(f"{name}#{k}", person["subject"], part_of[name], open_part[person["subject"]], media,
                            media, "", person["age"], person["gender"], "all", frame=f"{(start + end) / 2:.3f}",
                            segment=f"{start:.3f} {end:.3f}", transcript=texts.get(name, "").strip(),
                            attributes={"ethnicity": person["ethnicity"]}))  # fmt: skip
            for trait in TRAITS:
                numeric[trait].append(scores[name][trait])
    classes = {"age": list(AGE_GROUPS.values()), "ethnicity": list(ETHNICITY.values()), "gender": ["female", "male"]}
    return skip.result(rows, Meta(classes=classes), numeric)
