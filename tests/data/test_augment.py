"""Voice augmentation in the input pipeline (research/data/augment.py): off by default with the batches of the
pipeline without it (rebuilt here from the cached arrays); draws fixed by (seed, epoch, index) in a fresh process
and after a mid-epoch resume; the SNR of added noise measured on the output; speed perturbation's length and its
new classes; bad noise / impulse response folders as one-line errors. Fixtures: tiny MUSAN and RIRS_NOISES
layouts written with soundfile."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from research.config import AugmentConfig, Config, ConfigError, DataConfig
from research.config_parse import apply_overrides, from_dict, to_dict
from research.data import augment, augment_plan, loader, pipeline
from research.data.manifest import DataError

RATE, BATCH, SEED = 16000, 5, 1
SNRS = {"noise": (0.0, 5.0), "music": (7.0, 10.0), "speech": (13.0, 20.0)}  # disjoint: a measured SNR names its range


def write_sounds(root: Path) -> tuple[Path, Path]:
    """MUSAN (noise / music / speech, two files each, in sub-folders) and RIRS_NOISES (simulated_rirs) layouts."""
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    for k in range(2):
        sounds = {
            "noise": 0.3 * rng.standard_normal(RATE // 2 + 700 * k),  # shorter than some clips: tiled
            "music": 0.2 * np.sin(2 * np.pi * (220 + 110 * k) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)),
            "speech": 0.1 * rng.standard_normal(RATE) * (np.sin(2 * np.pi * (4 + k) * t) > 0),  # bursts
        }
        for category, wave in sounds.items():
            path = root / "musan" / category / f"set{k}" / f"{category}-{k:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, wave.astype(np.float32), RATE)
        for room in ("smallroom", "mediumroom"):
            path = root / "RIRS_NOISES" / "simulated_rirs" / room / f"Room00{k}" / f"Room00{k}-00001.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            decay = np.exp(-np.arange(1600) / (200 if room == "smallroom" else 500))
            soundfile.write(path, (rng.standard_normal(1600) * decay).astype(np.float32), RATE)
    return root / "musan", root / "RIRS_NOISES"


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> tuple[Path, Path]:
    return write_sounds(tmp_path_factory.mktemp("sounds"))


def voice_config(sounds, **kw) -> AugmentConfig:
    musan, rirs = sounds
    on = {"noise_prob": 0.4, "reverb_prob": 0.4, "gain_prob": 0.5, "speed_prob": 0.5, "flip_prob": 0.5}
    return AugmentConfig(musan=str(musan), rirs=str(rirs), **(on | kw))


def digest(batches: list[dict]) -> str:
    h = hashlib.sha256()
    for b in batches:
        for key in sorted(b):
            h.update(key.encode() + b[key].tobytes())
    return h.hexdigest()


def epoch(data, epoch: int = 0) -> list[dict]:
    with data.batches(BATCH, shuffle=True, seed=SEED, epoch=epoch, train=True) as it:
        return list(it)


def todays_batches(data: loader.SampleSet, epoch: int) -> list[dict]:
    """The training batches as the pipeline made them before augmentation, rebuilt from the cached arrays."""
    order = pipeline.order(len(data), shuffle=True, seed=SEED, epoch=epoch)
    fractions, S = pipeline.crop_fractions(len(data), SEED, epoch), data.voice_samples
    out = []
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        voice, length = np.zeros((len(idx), S), np.float32), np.zeros(len(idx), np.int64)
        for j, i in enumerate(idx):
            wave = data.voice[i]
            first = int(np.floor(fractions[i] * (max(len(wave) - S, 0) + 1)))
            clip = wave[first : first + S]
            voice[j, : len(clip)], length[j] = clip, len(clip)
        batch = {"face": data.face[idx].astype(np.float32) / 255.0, "voice": voice, "voice_len": length}
        batch |= {"text_ids": data.text_ids[idx], "text_mask": data.text_mask[idx]}
        batch |= {f"{m}_present": p[idx] for m, p in data.present.items()} | {k: v[idx] for k, v in data.label.items()}
        out.append(batch)
    return out


def test_off_by_default_the_batches_are_todays_bit_for_bit(tiny_source, data_config, sounds):
    manifest = tiny_source / "manifest.csv"
    zero = replace(voice_config(sounds), noise_prob=0, reverb_prob=0, gain_prob=0, speed_prob=0, flip_prob=0)
    for augmentation in (AugmentConfig(), zero):  # the default, and every probability 0 with the folders named
        splits = loader.load(data_config(manifest, augment=augmentation))
        assert splits.train.augment is None and len(splits.classes["identity"]) == 8
        for e in (0, 1):
            found, expected = epoch(splits.train, e), todays_batches(splits.train, e)
            assert len(found) == len(expected)
            for x, y in zip(found, expected, strict=True):
                assert sorted(x) == sorted(y)
                for key in x:
                    assert x[key].dtype == y[key].dtype, key
                    np.testing.assert_array_equal(x[key], y[key], err_msg=key)


SCRIPT = """
import hashlib, random, sys
import numpy as np
random.seed(99); np.random.seed(99)  # the global generators audiomentations would use: they must not matter
from research.config import AugmentConfig, DataConfig
from research.data import loader
aug = AugmentConfig(**{k: (float(v) if k.endswith("_prob") else v) for k, v in (a.split("=") for a in sys.argv[2:])})
cfg = DataConfig(dataset=sys.argv[1], image_size=16, voice_seconds=0.25, sample_rate=16000, augment=aug)
h = hashlib.sha256()
for b in loader.load(cfg).train.batches(5, shuffle=True, seed=1, epoch=0, train=True):
    for key in sorted(b):
        h.update(key.encode() + b[key].tobytes())
print(h.hexdigest())
"""


def test_the_same_seed_epoch_and_index_draw_the_same_in_a_fresh_process_and_after_a_resume(
    tiny_source, data_config, sounds
):
    aug = voice_config(sounds)
    train = loader.load(data_config(tiny_source / "manifest.csv", augment=aug)).train
    cache = [train.face.copy(), [v.copy() for v in train.voice]]
    whole = epoch(train)
    np.testing.assert_array_equal(train.face, cache[0])  # the cached arrays are augmented per read, never written
    assert all(np.array_equal(a, b) for a, b in zip(train.voice, cache[1], strict=True))
    assert digest(whole) != digest(todays_batches(train, 0))  # augmentation did something
    assert digest(epoch(train, 1)) != digest(whole)  # and draws anew each epoch
    with train.batches(BATCH, shuffle=True, seed=SEED, epoch=0, train=True) as it:
        head = [next(it), next(it), next(it)]
        state = json.loads(json.dumps(it.get_state()))  # as a checkpoint's JSON keeps it
    with train.batches(BATCH, shuffle=True, seed=SEED, epoch=0, train=True) as it:
        it.set_state(state)
        resumed = list(it)
    assert digest(head + resumed) == digest(whole)
    fields = {"musan": aug.musan, "rirs": aug.rirs, "noise_prob": 0.4, "reverb_prob": 0.4, "gain_prob": 0.5}
    fields |= {"speed_prob": 0.5, "flip_prob": 0.5}
    argv = [sys.executable, "-c", SCRIPT, str(tiny_source / "manifest.csv"), *(f"{k}={v}" for k, v in fields.items())]
    found = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == digest(whole)


def clean_clip(n: int = 4000) -> np.ndarray:
    """A quiet voiced sound (no peak rescaling after mixing)."""
    t = np.arange(n) / RATE
    return (0.05 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 5 * t))).astype(np.float32)


def test_the_snr_of_the_added_noise_is_in_its_categorys_range(sounds):
    cfg = replace(voice_config(sounds), noise_prob=1.0, reverb_prob=0.0, gain_prob=0.0)
    ranges = {
        f"{k}_snr_{end}": SNRS[c][j]
        for k, c in (("noise", "noise"), ("music", "music"), ("babble", "speech"))
        for j, end in enumerate(("min", "max"))
    }
    cfg = replace(cfg, **ranges)
    p = augment_plan.plan(DataConfig(augment=cfg), 0)
    clip, seen = clean_clip(), set()
    for i in range(30):
        record = {"index": np.int64(i), "voice": np.pad(clip, (0, 100)), "voice_len": np.int64(len(clip))}
        out = augment.Clip(p, SEED, 0).map(record)["voice"]
        noise = out[: len(clip)] - clip
        snr = 10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
        hits = [c for c, (low, high) in SNRS.items() if low - 0.01 <= snr <= high + 0.01]
        assert len(hits) == 1, snr
        seen.add(hits[0])
        assert not out[len(clip) :].any()  # the padding stays silent
    assert seen == set(SNRS)  # every category is drawn


def test_reverberation_keeps_the_length_and_changes_the_clip(sounds):
    cfg = replace(voice_config(sounds), noise_prob=0.0, reverb_prob=1.0)
    p = augment_plan.plan(DataConfig(augment=cfg), 0)
    clip = clean_clip()
    out = augment.mix(p, clip, augment_plan.stream(SEED, 0, 0, "voice"))
    assert out.shape == clip.shape and out.dtype == np.float32
    expected = []  # the clip convolved with one of the impulse responses, peak 0.5 (audiomentations), cut to length
    for path in p.rirs:
        full = np.convolve(clip.astype(np.float64), soundfile.read(path, dtype="float64")[0])
        expected.append((full * 0.5 / np.abs(full).max())[: len(clip)])
    assert sum(np.allclose(out, e, atol=1e-5) for e in expected) == 1


def test_speed_perturbation_changes_the_length_by_the_factor_and_triples_the_classes(tiny_source, data_config):
    p = augment_plan.Plan(AugmentConfig(speed_prob=1.0), RATE, 8, {}, ())
    wave, seen = clean_clip(4001), set()
    for i in range(10):
        record = {"index": np.int64(i), "voice": wave, "face": np.zeros((3, 4, 4), np.uint8)}
        out = augment.Recording(p, SEED, 0, np.zeros(10, bool)).map(record)
        factor = augment_plan.SPEEDS[int(out["speed"])]
        assert len(out["voice"]) == int(np.ceil(len(wave) / factor)), factor
        seen.add(factor)
    assert seen == {0.9, 1.1}  # speed_prob = 1: always perturbed
    aug = AugmentConfig(speed_prob=0.5)
    splits = loader.load(data_config(tiny_source / "manifest.csv", augment=aug, speed_perturb_labels=True))
    C = 8
    assert len(splits.classes["identity"]) == 3 * C and splits.classes["identity"][C].endswith("@speed0.9")
    plain = todays_batches(splits.train, 0)
    shifted = epoch(splits.train)
    for b, ref in zip(shifted, plain, strict=True):
        assert (b["identity"] % C == ref["identity"]).all() and (b["target"] == b["identity"]).all()
        np.testing.assert_array_equal(b["face"], ref["face"])  # only the voice and the labels change
    assert {int(k) for b in shifted for k in b["identity"] // C} == {0, 1, 2}
    for split in (splits.val, splits.test):  # never perturbed: the original classes
        assert split.augment is None and split.labels("identity").max() < C


@pytest.mark.parametrize("damage", ["missing", "empty", "no_category", "unreadable", "rirs_empty"])
def test_a_bad_noise_or_impulse_response_folder_is_a_one_line_error_naming_it(tmp_path, damage, capsys, run):
    musan, rirs = write_sounds(tmp_path)
    if damage == "missing":
        musan = tmp_path / "nowhere"
    elif damage == "empty":
        for f in (musan / "music").rglob("*.wav"):
            f.unlink()
    elif damage == "no_category":
        musan = tmp_path / "RIRS_NOISES"
    elif damage == "unreadable":
        (musan / "speech" / "set1" / "speech-0001.wav").write_bytes(b"RIFF not a wav")
    else:
        rirs = tmp_path / "musan"
    flags = ["--data.augment.noise_prob=0.3", f"--data.augment.musan={musan}", "--data.augment.reverb_prob=0.3"]
    code = run.main([*flags, f"--data.augment.rirs={rirs}", "--run.wandb=disabled", f"--run.out={tmp_path}/runs"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    named = {"missing": musan, "empty": musan / "music", "no_category": musan, "rirs_empty": rirs / "simulated_rirs"}
    assert str(named.get(damage, musan / "speech" / "set1" / "speech-0001.wav")) in err
    assert not (tmp_path / "runs").exists()  # nothing was set up
    with pytest.raises(DataError if damage == "unreadable" else ConfigError):
        cfg = DataConfig(augment=AugmentConfig(noise_prob=0.3, reverb_prob=0.3, musan=str(musan), rirs=str(rirs)))
        augment_plan.check(cfg)


@pytest.fixture(scope="module")
def run():
    """experiments/run.py as a module (its main returns the exit code)."""
    spec = importlib.util.spec_from_file_location("run", Path(__file__).parents[2] / "experiments/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_worker_process_reading_the_files_draws_what_the_cached_main_process_draws(tiny_source, data_config, sounds):
    aug = voice_config(sounds, face_policy="trivial", crop_prob=0.5, jitter_prob=0.5)
    cached = loader.load(data_config(tiny_source / "manifest.csv", augment=aug)).train
    streamed = loader.load(data_config(tiny_source / "manifest.csv", augment=aug, cache=False, workers=1)).train
    assert digest(epoch(streamed)) == digest(epoch(cached))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["--data.augment.noise_prob=0.3"], "data.augment.musan"),
        (["--data.augment.reverb_prob=0.3"], "data.augment.rirs"),
        (["--data.augment.noise_prob=0.7", "--data.augment.reverb_prob=0.7", "--data.augment.musan=m"], "at most 1"),
        (["--data.augment.flip_prob=1.5"], "data.augment.flip_prob"),
        (["--data.augment.noise_snr_min=20"], "data.augment.noise_snr_min"),
        (["--data.speed_perturb_labels=true"], "data.augment.speed_prob > 0"),
        (["--data.speed_perturb_labels=true", "--data.augment.speed_prob=0.5", "--data.target=gender"], "identity"),
    ],
)
def test_config_checks_of_the_augmentation_fields(overrides, named):
    with pytest.raises(ConfigError, match=named):
        apply_overrides(Config(), overrides)


def test_the_augmentation_fields_round_trip_through_a_run_record():
    flags = ["--data.augment.noise_prob=0.3", "--data.augment.musan=m", "--data.augment.face_policy=trivial"]
    cfg = apply_overrides(Config(), [*flags, "--data.augment.speed_prob=0.5", "--data.speed_perturb_labels=true"])
    assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
