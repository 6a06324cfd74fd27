"""Training-time augmentation in the input pipeline, framework-free (NumPy, Pillow, audiomentations).

Every draw is a pure function of (seed, epoch, sample index): each op has its own random stream
`default_rng([seed, epoch, index, STREAMS[op]])`, so a sample looks the same whatever the batching, the worker
count or a mid-epoch resume, and turning one op on does not move another op's draws. Nothing reads the global
`random` / `np.random` state that audiomentations uses: its transforms get their parameters from these
streams (`freeze_parameters`, then a call). Two Grain per-record transforms (research/data/pipeline.py):

    Recording  before the voice crop: speed perturbation of the whole recording (0.9 / 1.1: its length changes by
               1 / factor, as sox's `speed` in WeSpeaker), the face ops (research/data/augment_face.py)
    Clip       after the crop, on its samples: additive noise from MUSAN (noise, music, babble) or reverberation
               with a RIRS_NOISES impulse response (one draw picks one or neither, as WeSpeaker's
               add_reverb_noise), then gain; a clip that leaves [-1, 1] is scaled back by its peak (not clipped)

Sources: WeSpeaker (wespeaker/dataset/processor.py: speed_perturb, add_reverb_noise, aug_prob 0.6); Kaldi's
VoxCeleb recipe (egs/voxceleb/v2/run.sh: SNRs noise 0-15, music 5-15, babble 13-20 dB of 3-7 speakers;
Snyder et al. 2018, "X-vectors"); Ko et al. 2015, "Audio augmentation for speech recognition" (speed).
"""

from __future__ import annotations

import functools
import warnings

import grain
import numpy as np
import soundfile
from audiomentations import AddBackgroundNoise, ApplyImpulseResponse
from audiomentations.core.audio_loading_utils import load_sound_file
from audiomentations.core.utils import calculate_rms

from research.data import augment_face
from research.data.augment_plan import SPEEDS, Plan, stream
from research.data.decode import resample
from research.data.manifest import DataError

# audiomentations warns on every read of a file at another rate than data.sample_rate (it resamples it, soxr_hq).
warnings.filterwarnings("ignore", message=r".* had to be resampled from", module="audiomentations")


def speed_of(p: Plan, voice: np.ndarray, seed: int, epoch: int, index: int) -> int:
    """Index into SPEEDS of sample `index` this epoch: 0.9 or 1.1 with probability speed_prob (0 without a voice)."""
    r = stream(seed, epoch, index, "speed")
    return 1 + int(r.integers(2)) if r.random() < p.cfg.speed_prob and len(voice) else 0


def speed_classes(names: list[str]) -> list[str]:
    """The 3 C identity classes of data.speed_perturb_labels: the C names, then each at speed 0.9, then at 1.1."""
    return [name if k == 0 else f"{name}@speed{factor}" for k, factor in enumerate(SPEEDS) for name in names]


def relabel(batch: dict[str, np.ndarray], speeds: np.ndarray, classes: int) -> None:
    """Speed copies as new classes (WeSpeaker): class c at SPEEDS[k] becomes c + k C, for identity and target
    (data.speed_perturb_labels needs data.target = identity); unknown labels (-1) stay."""
    for name in ("identity", "target"):
        labels = batch[name]
        batch[name] = np.where(labels >= 0, labels + classes * speeds, labels)


class Recording(grain.transforms.Map):
    """Before the crop: speed perturbation of the whole voice, the face ops (records from pipeline.Read)."""

    def __init__(self, p: Plan, seed: int, epoch: int, face_present: np.ndarray) -> None:
        self.p, self.seed, self.epoch, self.face_present = p, seed, epoch, face_present

    def map(self, record: dict) -> dict:
        if "error" in record:
            return record
        i, rate, voice, face = int(record["index"]), self.p.sample_rate, record["voice"], record["face"]
        speed = speed_of(self.p, voice, self.seed, self.epoch, i)
        if speed:  # read at rate x factor, resampled to rate: 1 / factor as long (sox's `speed`)
            voice = resample(voice, round(rate * SPEEDS[speed]), rate)
        if self.face_present[i]:
            face = augment_face.augment(face, self.p.cfg, stream(self.seed, self.epoch, i, "face"))
        return record | {"voice": voice, "face": face, "speed": np.int64(speed)}


class Clip(grain.transforms.Map):
    """After the crop: noise or reverberation, then gain, on the clip's `voice_len` samples (padding stays 0)."""

    def __init__(self, p: Plan, seed: int, epoch: int) -> None:
        self.p, self.seed, self.epoch = p, seed, epoch

    def map(self, record: dict) -> dict:
        n = 0 if "error" in record else int(record["voice_len"])
        if n == 0:
            return record
        i = int(record["index"])
        try:
            clip = mix(self.p, record["voice"][:n], stream(self.seed, self.epoch, i, "voice"))
        except DataError as err:  # travels as an error record, as a bad sample file does (pipeline.Check)
            return {"index": record["index"], "error": f"{err} (augmenting sample {i})"}
        r = stream(self.seed, self.epoch, i, "gain")
        if r.random() < self.p.cfg.gain_prob:  # audiomentations' Gain: amplitude x 10^(dB / 20)
            clip = clip * np.float32(10 ** (r.uniform(self.p.cfg.gain_db_min, self.p.cfg.gain_db_max) / 20))
        peak = float(np.max(np.abs(clip)))
        voice = np.zeros_like(record["voice"])  # (S,)
        voice[:n] = clip / peak if peak > 1 else clip
        return record | {"voice": voice}


def mix(p: Plan, clip: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """One draw: additive noise (noise_prob), reverberation (reverb_prob) or neither (WeSpeaker's choice of one)."""
    u, cfg = r.random(), p.cfg
    if u < cfg.noise_prob:
        return add_noise(p, clip, r)
    if u < cfg.noise_prob + cfg.reverb_prob:
        path = p.rirs[r.integers(len(p.rirs))]
        t = ApplyImpulseResponse(ir_path=path, p=1.0, leave_length_unchanged=True)
        t.parameters = {"should_apply": True, "ir_file_path": path}
        return _call(t, clip, p.sample_rate, path)
    return clip


def add_noise(p: Plan, clip: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """A MUSAN category (uniformly among those present), file(s), SNR and offsets from `r`; audiomentations'
    AddBackgroundNoise mixes at that SNR relative to the clip's RMS (babble: the sum of several speech files,
    each at unit RMS, is the noise)."""
    category = sorted(p.noises)[r.integers(len(p.noises))]
    files, cfg, seconds = p.noises[category], p.cfg, len(clip) / p.sample_rate
    low, high = {
        "noise": (cfg.noise_snr_min, cfg.noise_snr_max),
        "music": (cfg.music_snr_min, cfg.music_snr_max),
        "speech": (cfg.babble_snr_min, cfg.babble_snr_max),
    }[category]
    count = int(r.integers(cfg.babble_speakers_min, cfg.babble_speakers_max + 1)) if category == "speech" else 1
    chosen = [files[k] for k in r.integers(len(files), size=count)]
    offsets = [r.uniform(0, max(_seconds(f) - seconds, 0)) for f in chosen]
    snr = float(r.uniform(low, high))

    def babble(first: np.ndarray, rate: int) -> np.ndarray:  # noise_transform: the other speakers join the first
        parts = [first] + [_load(f, rate, o, seconds) for f, o in zip(chosen[1:], offsets[1:], strict=True)]
        return sum(np.resize(x, len(first)) / max(calculate_rms(x), 1e-9) for x in parts).astype(np.float32)

    t = AddBackgroundNoise(chosen[0], min_snr_db=snr, max_snr_db=snr, noise_transform=babble if count > 1 else None)
    t.parameters = {"should_apply": True, "snr_db": snr, "rms_db": 0.0, "noise_file_path": chosen[0]}
    t.parameters |= {"offset": offsets[0], "duration": seconds}
    return _call(t, clip, p.sample_rate, chosen[0])


def _call(transform, clip: np.ndarray, rate: int, path: str) -> np.ndarray:
    """Apply an audiomentations transform with the parameters set on it (frozen: it draws nothing itself)."""
    transform.freeze_parameters()
    try:
        return transform(clip.astype(np.float32), rate).astype(np.float32)
    except DataError:  # from the babble's other speakers (_load), naming their file
        raise
    except Exception as err:  # librosa raises several kinds (soundfile, audioread) for a file it cannot read
        raise DataError(f"unreadable augmentation file {path}: {err}") from None


def _load(path: str, rate: int, offset: float, seconds: float) -> np.ndarray:
    try:
        return load_sound_file(path, rate, offset=offset, duration=seconds)[0]
    except Exception as err:  # as in _call
        raise DataError(f"unreadable augmentation file {path}: {err}") from None


@functools.lru_cache(maxsize=1 << 16)
def _seconds(path: str) -> float:
    """A noise file's duration from its header (for a random offset into it)."""
    try:
        return soundfile.info(path).duration
    except (RuntimeError, OSError, ValueError) as err:
        raise DataError(f"unreadable augmentation file {path}: {err}") from None
