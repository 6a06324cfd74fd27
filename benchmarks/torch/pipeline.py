"""Step time of the default model fed by the input pipeline, against the same steps fed from memory, without and
with training-time augmentation; decode + augmentation samples/s per worker for voice and face.

    python benchmarks/torch/pipeline.py [--steps 10] [--batch 32] [--workers 2] [--per-identity 20] [--threads 0]

Feeds of the same training steps (default model, the embedded dataset made larger with --per-identity
samples per identity): batches already in memory (the yardstick), the pipeline over the in-memory cache
(data.cache, the default), the pipeline decoding loose files in --workers processes (data.cache=false),
and packed ArrayRecord shards (prepare.py pack) read in --workers processes. A step's time includes the
wait for its batch; the spawned workers' start-up (time to the first batch) is printed apart. Then the
samples/s of decoding in one process and through the pipeline with 1 to --workers workers (in all and per
worker), without a model. The issue's goal: a step fed by 2 workers within 1.1x of the in-memory step.

With augmentation (data.augment: MUSAN noise or RIRS_NOISES reverberation 0.3 each, speed 0.9 / 1.1 with 2/3, gain
0.5; face flip, crop and jitter 0.5 each; small MUSAN and RIRS_NOISES folders are generated in a temporary folder):
the samples/s one worker decodes and augments, per modality (voice: read, speed, crop, noise or reverberation,
gain; face: read, flip / crop / jitter; a face read from a 224 px, 25 fps, 8 s H.264 video at a random time, as
VoxCeleb2's faces from video), and the step-time ratio pipeline-fed (files, --workers workers) vs in-memory
batches augmented beforehand.
--threads sets the training process's torch threads (0: torch's default); on a CPU shared with other jobs
use 1: OpenMP threads spin-waiting for a descheduled sibling make a 2-thread step many times slower there.
(Under benchmarks/torch/ because it imports torch: the layout rule.)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from research.config import Config  # noqa: E402
from research.data import augment, augment_face, pack, synthetic  # noqa: E402
from research.data.augment_plan import stream  # noqa: E402
from research.data.crop import Crop  # noqa: E402
from research.data.decode import read_face, read_voice  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.data.pipeline import crop_fractions  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import to_device  # noqa: E402
from research.torch.trainer import make_optimizer  # noqa: E402

EPOCH = {"shuffle": True, "seed": 0, "epoch": 1, "train": True}


def trainer(cfg: Config, classes: int, vocab: int):
    """A step function of the default model (forward, backward, AdamW)."""
    torch.manual_seed(0)
    model = build_model(cfg, classes, vocab, None).train()
    optimizer = make_optimizer(model, cfg)

    def step(batch: dict) -> None:
        loss = model(to_device(batch, torch.device("cpu")))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step, batches, steps: int) -> tuple[float, float]:
    """(seconds to the first batch, seconds per step) over `steps` steps after two warm-up steps."""
    start = time.perf_counter()
    first = next(batches)
    startup = time.perf_counter() - start
    step(first)
    step(next(batches))
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        step(batch)
    return startup, (time.perf_counter() - start) / steps


def rate(batches, batch: int) -> float:
    """Samples/s of a batch iterator after its first batch (worker start-up excluded)."""
    next(batches)
    start, count = time.perf_counter(), 0
    for b in batches:
        count += len(b["face"])
    return count / (time.perf_counter() - start)


def compare(step, feeds: dict, steps: int) -> dict[str, float]:
    """Time each feed's steps; print startup, step ms and the ratio to the first feed (the yardstick)."""
    print(f"{'feed':<34} {'first batch s':>13} {'step ms':>8} {'vs memory':>9}")
    base, ratios = None, {}
    for name, batches in feeds.items():
        startup, seconds = timed(step, batches, steps)
        if hasattr(batches, "close"):
            batches.close()
        base = base or seconds
        ratios[name] = seconds / base
        print(f"{name:<34} {startup:>13.2f} {1e3 * seconds:>8.1f} {seconds / base:>8.2f}x", flush=True)
    return ratios


def sounds(root: Path, rate: int) -> tuple[Path, Path]:
    """Small MUSAN (noise, music, speech: 3 files of 5 s each) and RIRS_NOISES (simulated_rirs: 4 responses of
    0.1-0.5 s) folders in their layouts, generated: what data.augment reads."""
    rng = np.random.default_rng(0)
    for category in ("noise", "music", "speech"):
        for k in range(3):
            path = root / "musan" / category / f"{category}-{k:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, (0.2 * rng.standard_normal(5 * rate)).astype(np.float32), rate)
    for k in range(4):
        path = root / "RIRS_NOISES" / "simulated_rirs" / "smallroom" / f"Room{k:03d}" / f"Room{k:03d}-00001.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = rate * (k + 1) // 8
        soundfile.write(path, (rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 6))).astype(np.float32), rate)
    return root / "musan", root / "RIRS_NOISES"


def augmented(cfg: Config, root: Path) -> None:
    """Turn data.augment on: WeSpeaker's voice recipe (noise or reverberation, speed) with gain, face flip / crop /
    jitter."""
    musan, rirs = sounds(root, cfg.data.sample_rate)
    voice = {"noise_prob": 0.3, "reverb_prob": 0.3, "speed_prob": 2 / 3, "gain_prob": 0.5}
    face = {"flip_prob": 0.5, "crop_prob": 0.5, "jitter_prob": 0.5}
    cfg.data.augment = dataclasses.replace(cfg.data.augment, musan=str(musan), rirs=str(rirs), **voice, **face)


def video(path: Path, seconds: float, size: int = 224, fps: int = 25) -> Path:
    """An H.264 video (x264's defaults: a key frame every 250 frames) of a smooth picture panning sideways."""
    base = np.random.default_rng(0).integers(0, 256, (size // 8, size // 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(base).resize((2 * size, size), Image.Resampling.BILINEAR))  # (H, 2H, 3)
    with av.open(str(path), "w") as container:
        out = container.add_stream("libx264", rate=fps)
        out.width, out.height, out.pix_fmt = size, size, "yuv420p"
        for k in range(round(seconds * fps)):
            picture = np.ascontiguousarray(base[:, k % size : k % size + size])
            for packet in out.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in out.encode(None):
            container.mux(packet)
    return path


def per_worker(train, cfg: Config, n: int, clip: Path) -> dict[str, float]:
    """Samples/s that one process decodes and augments: voices, faces, and faces read from `clip` at random times."""
    p, source = train.augment, train.stream.source
    rows, folder, n = source.rows, source.manifest.parent, min(n, len(source))
    recording = augment.Recording(p, 0, 1, np.zeros(len(rows), bool))  # the voice's speed (the face timed apart)
    crop, noise = Crop(crop_fractions(len(rows), 0, 1), train.voice_samples), augment.Clip(p, 0, 1)
    size, rates = cfg.data.image_size, {}
    start = time.perf_counter()
    for i in range(n):
        record = {"index": np.int64(i), "face": None, "voice": read_voice(folder / rows[i].voice, p.sample_rate)}
        noise.map(crop.map(recording.map(record)))
    rates["voice: read, speed, crop, noise, gain"] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        augment_face.augment(read_face(folder / rows[i].face, size), p.cfg, stream(0, 1, i, "face"))
    rates["face: read, flip, crop, jitter"] = n / (time.perf_counter() - start)
    start, m = time.perf_counter(), max(n // 10, 2)
    for i in range(m):
        face = read_face(clip, size, at=float(stream(0, 1, i, "frame").random()))
        augment_face.augment(face, p.cfg, stream(0, 1, i, "face"))
    rates["face from an 8 s 224 px video"] = m / (time.perf_counter() - start)
    return rates


def with_augmentation(cfg: Config, step, args, root: Path) -> None:
    """Per-worker decode + augmentation rates, and the step-time ratio with augmentation on (loose files)."""
    cfg.data.dataset = "synthetic"
    augmented(cfg, root)
    cfg.data.cache, cfg.data.workers = True, 0
    memory = list(load(cfg.data).train.batches(args.batch, **EPOCH))  # augmented beforehand
    cfg.data.cache, cfg.data.workers = False, args.workers
    files = load(cfg.data)
    print(f"\n{'decode + augmentation, one worker':<40} {'samples/s':>10}")
    for name, samples in per_worker(files.train, cfg, 200, video(root / "clip.mp4", 8.0)).items():
        print(f"{name:<40} {samples:>10.0f}", flush=True)
    print(f"\naugmentation on ({', '.join(f'{k} {v:.2g}' for k, v in vars(cfg.data.augment).items() if 'prob' in k)})")
    name = f"pipeline, files, {args.workers} workers"
    feeds = {"in-memory batches (yardstick)": iter(memory), name: files.train.batches(args.batch, **EPOCH)}
    ratios = compare(step, feeds, args.steps)
    print(f"goal: <= 1.10x with {args.workers} workers, augmentation on; {ratios[name]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config()
    cfg.data.batch_size = args.batch
    cfg.data.synthetic.samples_per_identity = args.per_identity
    path = synthetic.ensure(cfg.data)
    cached = load(cfg.data)
    if len(cached.train) < (args.steps + 3) * args.batch:
        raise SystemExit(f"{len(cached.train)} training samples: fewer than steps + 3 batches; raise --per-identity")
    cfg.data.cache, cfg.data.workers = False, args.workers
    files = load(cfg.data)
    folder = Path(tempfile.mkdtemp(prefix="packed-"))
    packed_manifest, _ = pack.write(
        path, folder, image_size=cfg.data.image_size, sample_rate=cfg.data.sample_rate, workers=args.workers
    )
    cfg.data.dataset = str(packed_manifest)
    packed = load(cfg.data)
    step = trainer(cfg, len(cached.classes[cfg.data.target]), cached.vocab_size)
    memory = list(cached.train.batches(args.batch, **EPOCH))
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, {len(cached.train)} training samples")
    feeds = {
        "in-memory batches (yardstick)": iter(memory),
        "pipeline, cache, 0 workers": cached.train.batches(args.batch, **EPOCH),
        f"pipeline, files, {args.workers} workers": files.train.batches(args.batch, **EPOCH),
        f"pipeline, packed, {args.workers} workers": packed.train.batches(args.batch, **EPOCH),
    }
    ratios = compare(step, feeds, args.steps)
    worst = max(ratios[name] for name in list(feeds)[2:])
    print(f"goal: <= 1.10x with {args.workers} workers from files and packed shards; worst {worst:.2f}x")

    print(f"\n{'decoding (no model)':<34} {'samples/s':>10} {'per worker':>11}")
    for name, source in [
        ("files, in this process", files.train.stream.source),
        ("packed, in this process", packed.train.stream.source),
    ]:
        n = min(300, len(source))
        start = time.perf_counter()
        for i in range(n):
            source[i]
        print(f"{name:<34} {n / (time.perf_counter() - start):>10.0f}", flush=True)
    for workers in range(1, args.workers + 1):  # --workers 0: none (no processes at all)
        files.train.workers = workers
        with files.train.batches(args.batch, **EPOCH) as batches:
            samples, name = rate(batches, args.batch), f"pipeline, files, {workers} worker(s)"
            print(f"{name:<34} {samples:>10.0f} {samples / workers:>11.0f}", flush=True)
    with_augmentation(cfg, step, args, folder)


if __name__ == "__main__":
    main()
