"""Faces from video (research/data/frames.py): the training frame is drawn from (seed, epoch, index), evaluation reads
the middle frame, data.face_frames = k embeds k frames and averages them, and VoxCeleb2's videos become faces.
References: the frames decoded independently with PyAV (every frame, no seek), cropped and resized with Pillow."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from experiments.prepare import prepare
from research import backend, embedding
from research.config import Config, DataConfig
from research.config_parse import apply_overrides
from research.data import loader, manifest
from research.data.datasets.common import Options
from research.data.manifest import DataError, Row
from research.predictions import Predictions
from tests.data import layouts

FPS, FRAMES, SIZE, IMAGE = 4, 8, 32, 16  # 2 s videos of 8 frames, each frame grey at its own level
BOX = [4.0, 6.0, 20.0, 18.0]
SEED = 1


def level(k: int) -> int:
    return 16 + 28 * k


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """4 subjects x (2 train, 1 val, 1 test) video faces (every other one with a box) with WAV voices, and one
    image face in val; returns the manifest."""
    root = tmp_path_factory.mktemp("videos")
    rows = []
    for s in range(4):
        for u, split in enumerate(("train", "train", "val", "test")):
            name = f"s{s}/{u}"
            layouts.write_mp4(root / f"{name}.mp4", [level(k) for k in range(FRAMES)], FPS,
                              layouts.wave(name, seconds=2.0), layouts.RATE, SIZE)  # fmt: skip
            soundfile.write(root / f"{name}.wav", layouts.wave(f"s{s}", seconds=0.5), layouts.RATE)
            box = " ".join(f"{x:g}" for x in BOX) if (s + u) % 2 else ""
            rows.append(Row(name, f"s{s}", split, None, f"{name}.mp4", f"{name}.wav", "", "", "", "all", box=box))
    Image.new("RGB", (SIZE, SIZE), (90, 90, 90)).save(root / "image.png")
    rows.append(Row("image", "s0", "val", None, "image.png", "s0/0.wav", "", "", "", "all"))
    return manifest.write(root / "videos.csv", rows)


def reference(path: Path, at: float, box: list[float] | None) -> np.ndarray:
    """The frame on screen at `at` x the duration (FRAMES / FPS), every frame decoded -> (3, IMAGE, IMAGE) uint8."""
    with av.open(str(path)) as container:
        frames = [(f.time, f.to_image()) for f in container.decode(video=0)]
    t = frames[0][0] + at * FRAMES / FPS
    image = [im for time, im in frames if time <= t + 1e-6][-1]
    if box is not None:
        x, y, w, h = box
        image = image.crop((round(x), round(y), round(x + w), round(y + h)))
    return np.asarray(image.resize((IMAGE, IMAGE), Image.Resampling.BILINEAR)).transpose(2, 0, 1)


def config(path: Path, **kw) -> DataConfig:
    return DataConfig(dataset=str(path), image_size=IMAGE, voice_seconds=0.5, batch_size=4, **kw)


def faces(batch: dict) -> np.ndarray:
    return np.round(batch["face"] * 255).astype(np.uint8)  # (B, 3, H, W)


def training_faces(path: Path, epoch: int, cache: bool) -> np.ndarray:
    """The training split's faces of one epoch in sample order (N, 3, H, W)."""
    train = loader.load(config(path, cache=cache)).train
    kw = {"shuffle": False, "seed": SEED, "epoch": epoch, "train": True}
    return np.concatenate([faces(b) for b in train.batches(4, **kw)])


def rows_of(path: Path, split: str) -> list[Row]:
    return [r for r in manifest.read(path) if r.split == split]


def test_training_frame_is_drawn_from_seed_epoch_and_index_in_a_fresh_process(videos):
    script = (
        "import json, sys; from pathlib import Path; from tests.data.test_video_faces_torch import training_faces; "
        "print(json.dumps(training_faces(Path(sys.argv[1]), 1, cache=False).tolist()))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", script, str(videos)], capture_output=True, text=True, check=True, timeout=300
    )
    epochs = {e: training_faces(videos, e, cache=True) for e in (1, 2)}
    np.testing.assert_array_equal(np.array(json.loads(fresh.stdout), np.uint8), epochs[1])  # uncached = cached
    chosen = {}
    for e, found in epochs.items():
        for i, r in enumerate(rows_of(videos, "train")):
            at = np.random.default_rng([SEED, e, i, 7]).random()  # frames.py's stream: (seed, epoch, index, 7)
            want = reference(videos.parent / r.face, at, manifest.numbers(r.box) or None)
            np.testing.assert_array_equal(found[i], want)
            chosen[e, i] = int(at * FRAMES)
    assert [chosen[1, i] for i in range(8)] != [chosen[2, i] for i in range(8)]  # another epoch, other frames
    assert len({chosen[1, i] for i in range(8)}) > 2  # spread over the video


@pytest.mark.parametrize("cache", [True, False])
def test_evaluation_reads_the_middle_frame(videos, cache):
    val = loader.load(config(videos, cache=cache)).val
    batches = list(val.batches(4, shuffle=False, seed=SEED, epoch=0, train=False))
    found = np.concatenate([faces(b) for b in batches])
    assert np.concatenate([b["index"] for b in batches]).tolist() == list(range(len(val)))
    for i, r in enumerate(rows_of(videos, "val")):
        if r.id == "image":  # an image face is read as it is
            np.testing.assert_array_equal(found[i], np.full((3, IMAGE, IMAGE), 90, np.uint8))
            continue
        np.testing.assert_array_equal(found[i], reference(videos.parent / r.face, 0.5, manifest.numbers(r.box) or None))
        assert abs(int(found[i].mean()) - level(FRAMES // 2)) <= 3  # frame 4 of 8 starts at the middle, 1 s


def tiny_config(path: Path, *args: str) -> Config:
    return apply_overrides(Config(), [
        f"--data.dataset={path}", f"--data.image_size={IMAGE}", "--data.voice_seconds=0.5", "--data.batch_size=4",
        "--modalities=face,voice", "--fusion=late", "--model.dim=16", "--run.wandb=disabled", "--run.progress=false",
        *args,
    ])  # fmt: skip


def test_face_frames_averages_the_embeddings_of_k_frames(videos):
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    face_frames_average(videos, "torch")
    assert torch.get_num_threads() == threads


def face_frames_average(videos: Path, name: str) -> None:
    """Backend `name`: predict with data.face_frames = 3 = the mean of the unit embeddings of the three frames
    embedded one by one (each split a copy whose cached faces are the PyAV reference frames), normalised again;
    embed.py's embeddings (research/embedding.py) are the same (tests/data/test_video_faces_jax.py: jax)."""
    cfg = tiny_config(videos, "--data.face_frames=3", f"--backend={name}")
    splits = loader.load(cfg.data)
    val, rows = splits.val, rows_of(videos, "val")
    kw = {"shuffle": False, "seed": SEED, "epoch": 0, "train": False}
    index = np.concatenate([b["index"] for b in val.batches(4, **kw)])
    assert index.tolist() == [i for i, r in enumerate(rows) for _ in range(1 if r.id == "image" else 3)]
    pieces = backend.load(name)
    model, device = pieces.new_model(cfg, splits)[0], pieces.place("cpu")
    got = pieces.predict(model, val, cfg, device)
    parts = []
    for at in (1 / 6, 1 / 2, 5 / 6):  # the centres of 3 equal parts
        frame = val.face.copy()
        for i, r in enumerate(rows):
            if r.id != "image":
                frame[i] = reference(videos.parent / r.face, at, manifest.numbers(r.box) or None)
        parts.append(pieces.predict(model, dataclasses.replace(val, face=frame, videos=None), cfg, device))
    video = np.array([r.id != "image" for r in rows])
    for key in ("embedding", "face_embedding", "voice_embedding"):
        unit = [p[key] / np.linalg.norm(p[key], axis=1, keepdims=True) for p in parts]
        mean = np.mean(unit, axis=0)
        want = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        np.testing.assert_allclose(got[key][video], want[video], atol=1e-5)
        np.testing.assert_allclose(got[key][~video], parts[1][key][~video], atol=1e-6)  # the image: as it was
    probs = np.mean([np.exp(p["log_probs"]) for p in parts], axis=0)
    np.testing.assert_allclose(np.exp(got["log_probs"][video]), probs[video], atol=1e-5)
    samples = embedding.decode(videos.parent, rows, cfg, progress=False)  # embed.py's path: the same k frames
    embedded = embedding.embed(pieces, model, cfg, device, samples, folder=videos.parent, progress=False)
    np.testing.assert_allclose(np.stack([embedded[r.id] for r in rows]), got["embedding"], atol=1e-6)


def test_copies_fold_by_index_into_mean_unit_embeddings():
    predictions = Predictions()
    emb = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [5.0, 0.0]])  # samples 1, 0, 0, 0 (sample 0 three times)
    log_probs = np.log(np.array([[0.5, 0.5], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1]]))
    batch = {"index": np.array([1, 0, 0, 0]), "target": np.array([1, 0, 0, 0])}
    predictions.add(batch, 1.0, {"embedding": emb, "log_probs": log_probs})
    out = predictions.arrays()
    mean = np.array([0.0, 1.0]) + np.array([1.0, 0.0]) + np.array([1.0, 0.0])
    np.testing.assert_allclose(out["embedding"], [mean / np.linalg.norm(mean), [3.0, 4.0]])  # one copy: as it was
    np.testing.assert_allclose(np.exp(out["log_probs"]), [[0.5, 0.5], [0.5, 0.5]])
    assert out["target"].tolist() == [0, 1] and "index" not in out


def test_face_frames_must_be_at_least_one(capsys):
    from experiments.run import main

    assert main(["--data.face_frames=0"]) == 2
    assert capsys.readouterr().err == "error: data.face_frames must be at least 1, got 0\n"


def test_voxceleb2_faces_from_video_train_a_tiny_run(tmp_path):
    from research.torch.trainer import train_and_evaluate

    root = tmp_path / "vox2"
    spec = layouts.voxceleb2(root)
    for name, (subject, part) in spec["files"].items():
        video = (root / part / "mp4" / name).with_suffix(".mp4")
        layouts.write_mp4(video, [level(k) for k in range(FRAMES)], FPS, layouts.wave(subject, seconds=2.0),
                          layouts.RATE, SIZE)  # fmt: skip
    out = tmp_path / "out" / "vox2.csv"
    prepare("voxceleb2", root, Options(out, progress=False, faces_from_video=True))
    rows = manifest.read(out)
    assert len(rows) == len(spec["files"])
    for r in rows:
        assert (out.parent / r.face).resolve() == (root / spec["files"][r.id][1] / "mp4" / r.id).with_suffix(".mp4")
        assert r.frame == "" and r.voice.endswith(".m4a")
    run = (f"--run.out={tmp_path / 'runs'}", "--run.name=vox2", "--optim.epochs=1")
    cfg = tiny_config(out, *run, "--fusion=concat", "--eval.plots=false")  # one test sample a person: no 1:2 matching
    threads = torch.get_num_threads()
    train_and_evaluate(cfg, tmp_path / "runs" / "vox2", "vox2")
    assert torch.get_num_threads() == threads
    record = json.loads((tmp_path / "runs" / "vox2" / "record.json").read_text())
    assert record["status"] == "finished" and np.isfinite(record["history"][0]["train/loss"])
    first = next(iter(spec["files"]))
    (root / spec["files"][first][1] / "mp4" / first).with_suffix(".mp4").unlink()
    with pytest.raises(DataError, match="no video of"):
        prepare("voxceleb2", root, Options(out, progress=False, faces_from_video=True))
