"""Open-set verification EER and trained-head geometry of each loss head, against the number of training
identities at a fixed budget of training samples (samples per identity fall as identities grow).

    python benchmarks/torch/verification_by_loss.py [--features vectors|images]
        [--losses softmax,arcface,cosface,sphereface2] [--identities 100,300,1000,3000] [--samples 12000]
        [--seeds 0,1,2] [--steps 1000] [--layer-norm] [--out DIR] [--key=value ...]

`--features vectors` (the default) is embedding-level synthetic data, not the face encoder: an identity is
a point on the unit sphere of a 16-d trait space, a sample adds Gaussian noise to it and 16 nuisance
coordinates shared by all identities (pose, light), and one fixed random rotation mixes the 32
coordinates (`vectors`). A small MLP (32 -> 128 -> 32, `--layer-norm` ends it with a LayerNorm as the
fusion models end) is trained with each head for `--steps` steps of 256 samples, with the trainer's
optimizer and schedule (AdamW, weight decay on matrices, warm-up then cosine), and scored by cosine
verification trials on 500 identities it never saw (4 samples each). This is what makes 3000 training
identities feasible on a shared 2-core CPU; it measures the heads, not the encoders.
`--features images` trains the face model of the embedded dataset instead (`train_and_evaluate`, identity-
disjoint `open` split, best epoch on val EER; extra `--key=value` arguments override the config), which
costs about a minute a run at 120 training identities.

Geometry, on the training identities and the final model (research/metrics/geometry.py, degrees): the mean
target angle (embedding to its class centre: the head's row W_y, softmax's linear-layer row with the bias
left out), the mean angle to the class's mean embedding, the minimum angle between two head centres and
the mean over centres of the angle to the nearest other one. Prints mean +- std over seeds, and each
loss's test EER minus the first loss's, paired by seed (same data), per identity count. A benchmark, not a
test: which head wins here is a measurement, not a property of the code.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import losses  # noqa: E402
from losses.torch.softmax import Softmax  # noqa: E402
from research.config import Config  # noqa: E402
from research.config_parse import apply_overrides  # noqa: E402
from research.data.loader import load  # noqa: E402
from research.metrics.geometry import min_centre_angle, nearest_centre_angles, target_angles  # noqa: E402
from research.metrics.verification import class_means, cosine_scores, eer, make_trials  # noqa: E402
from research.torch import checkpoint  # noqa: E402
from research.torch.model import build_model  # noqa: E402
from research.torch.predict import predict  # noqa: E402
from research.torch.trainer import make_optimizer, train_and_evaluate, warmup_cosine  # noqa: E402

TRAITS, NUISANCE = 16, 16  # coordinates of the embedding-level data that carry identity / that do not
TEST_PEOPLE, TEST_SAMPLES, TRIALS = 500, 4, 6000  # trials: all 3000 target pairs and 3000 non-target
BUDGET = [
    "--data.split=open",
    "--data.target=identity",
    "--modalities=face",
    "--data.synthetic.noise=0.7",
    "--data.image_size=16",
    "--data.voice_seconds=0.1",  # voices are generated but not used (face only)
    "--model.layers=1",
    "--optim.epochs=8",
    "--eval.trials=2000",
    "--eval.plots=false",
    "--run.wandb=disabled",
    "--run.progress=false",
]


def vectors(people: int, per_person: int, rng: np.random.Generator, noise: float = 0.7) -> tuple:
    """`people` new identities x `per_person` samples -> x (N, 32) float32, labels (N,) in [0, people).

    Identity centres are uniform on the unit sphere of the trait space; a sample is its centre plus
    Gaussian noise of norm about `noise`, next to nuisance coordinates of std 1 (norm about 4, so raw
    cosines are dominated by them), all rotated by one fixed random orthogonal matrix.
    """
    centres = rng.normal(size=(people, TRAITS))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)  # (P, TRAITS)
    labels = np.repeat(np.arange(people), per_person)  # (N,)
    traits = centres[labels] + noise / math.sqrt(TRAITS) * rng.normal(size=(len(labels), TRAITS))
    nuisance = rng.normal(size=(len(labels), NUISANCE))
    mix = np.linalg.qr(np.random.default_rng(0).normal(size=(TRAITS + NUISANCE,) * 2))[0]  # the same for all
    return (np.concatenate([traits, nuisance], axis=1) @ mix.T).astype(np.float32), labels


def train_on_vectors(
    loss: str, x: np.ndarray, labels: np.ndarray, *, seed: int, steps: int, layer_norm: bool = False
) -> tuple[nn.Module, nn.Module]:
    """Train MLP + head `loss` (its published defaults) on x (N, 32), labels (N,) -> (mlp, head)."""
    torch.manual_seed(seed)
    dim = TRAITS + NUISANCE
    mlp = nn.Sequential(
        nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, dim), *([nn.LayerNorm(dim)] if layer_norm else [])
    )
    head = losses.build("torch", loss, dim=dim, classes=int(labels.max()) + 1)
    cfg = Config()  # the trainer's optimizer: lr 2e-3, weight decay 0.05 on matrices
    optimizer = make_optimizer(nn.ModuleList([mlp, head]), cfg)
    scheduler = warmup_cosine(optimizer, steps // 20, steps)
    x, labels = torch.from_numpy(x), torch.from_numpy(labels)
    order = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(len(labels), (256,), generator=order)
        value, _ = head(mlp(x[batch]), labels[batch])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        scheduler.step()
    return mlp.eval(), head.eval()


def angles(embeddings: np.ndarray, labels: np.ndarray, head: nn.Module) -> dict[str, float]:
    """The geometry columns (degrees) of embeddings (N, D) with their labels under a trained head."""
    centres = (head.linear.weight if isinstance(head, Softmax) else head.weight).detach().numpy()  # (C, D)
    means, _ = class_means(embeddings, labels)  # (C, D): labels are 0..C-1, every class present
    return {
        "target": math.degrees(target_angles(embeddings, labels, centres).mean()),
        "to mean": math.degrees(target_angles(embeddings, labels, means).mean()),
        "centre": math.degrees(min_centre_angle(centres)),
        "nearest": math.degrees(nearest_centre_angles(centres).mean()),
    }


def vectors_run(loss: str, seed: int, people: int, samples: int, args: argparse.Namespace) -> dict[str, float]:
    """One embedding-level run: train on `people` x samples // people, score unseen people -> figures."""
    started = time.time()
    x, labels = vectors(people, samples // people, np.random.default_rng([seed, 0]))
    mlp, head = train_on_vectors(loss, x, labels, seed=seed, steps=args.steps, layer_norm=args.layer_norm)
    test_x, subjects = vectors(TEST_PEOPLE, TEST_SAMPLES, np.random.default_rng([seed, 1]))
    with torch.no_grad():
        train_emb, test_emb = mlp(torch.from_numpy(x)).numpy(), mlp(torch.from_numpy(test_x)).numpy()
    i, j, target = make_trials(subjects, TRIALS, seed)
    measured = {"test": eer(cosine_scores(test_emb, i, j), target)[0], **angles(train_emb, labels, head)}
    return measured | {"people": people, "samples": len(labels), "seconds": time.time() - started}


def dataset(identities: int, samples: int) -> list[str]:
    """About `identities` training people sharing `samples` training samples (at least 3 each)."""
    return [
        f"--data.synthetic.identities={round(identities / 0.6)}",
        f"--data.synthetic.samples_per_identity={max(3, round(samples / identities))}",
    ]


def geometry(cfg: Config, run_dir: Path) -> dict[str, float]:
    """The geometry columns of the last epoch's model on the train split."""
    splits = load(cfg.data)
    model = build_model(cfg, len(splits.classes[cfg.data.target]), splits.vocab_size, None)
    checkpoint.load(run_dir / "last.safetensors", model)
    preds = predict(model, splits.train, cfg, torch.device("cpu"))
    (head,) = model.heads.values()
    labels = preds["target"]  # (N,): every training sample's class is known
    people = len(set(labels.tolist()))
    return angles(preds["embedding"], labels, head) | {"people": people, "samples": len(labels)}


def images_run(loss: str, seed: int, people: int, samples: int, args: argparse.Namespace) -> dict[str, float]:
    """One run of the face model on the embedded dataset -> figures."""
    run_dir = args.out / f"{people}-{loss}-{seed}"
    overrides = [*BUDGET, *dataset(people, samples), *args.overrides]
    cfg = apply_overrides(Config(), [*overrides, f"--loss={loss}", f"--run.seed={seed}", f"--run.out={args.out}"])
    started = time.time()
    summary = train_and_evaluate(cfg, run_dir, run_dir.name)
    return {"test": summary["test/eer"], **geometry(cfg, run_dir), "seconds": time.time() - started}


def paired_gap(runs: list[dict], base: list[dict]) -> list[float]:
    """Test EER minus the baseline's, seed by seed (the two trained on the same data)."""
    return [r["test"] - b["test"] for r, b in zip(runs, base, strict=True)]


def mean_std(values: list[float], digits: int = 4) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.{digits}f} +- {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", choices=("vectors", "images"), default="vectors")
    parser.add_argument("--losses", default="softmax,arcface,cosface,sphereface2")
    parser.add_argument("--identities", default="100,300,1000,3000", help="training identities, one run set each")
    parser.add_argument("--samples", type=int, default=12000, help="training samples, the same at every count")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1000, help="vectors: training steps of 256 samples")
    parser.add_argument("--layer-norm", action="store_true", help="vectors: end the MLP with a LayerNorm")
    parser.add_argument("--out", type=Path, help="images: keep the runs here (default: a temporary folder)")
    args, args.overrides = parser.parse_known_args()
    if args.features == "vectors" and args.overrides:
        parser.error(f"config overrides apply to --features images only: {args.overrides}")
    names, seeds = args.losses.split(","), [int(s) for s in args.seeds.split(",")]
    counts = [int(n) for n in args.identities.split(",")]
    run = vectors_run if args.features == "vectors" else images_run
    if args.features == "vectors":
        torch.set_num_threads(1)  # tiny matmuls: more threads only contend on a shared CPU
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or Path(tmp)
        for n in counts:
            for loss in names:
                results[n, loss] = [run(loss, seed, n, args.samples, args) for seed in seeds]
                print(f"{n} {loss}: test EER {mean_std([r['test'] for r in results[n, loss]])}", flush=True)
    if args.features == "vectors":
        budget = f"embedding-level vectors (not the face encoder), {args.steps} steps of 256"
        budget += ", MLP ending in a LayerNorm" if args.layer_norm else ""
    else:
        budget = " ".join([*BUDGET, *args.overrides])
    print(f"\n{budget}; {args.samples} training samples; seeds {seeds}; angles in degrees on the train identities")
    columns = ["test EER", f"- {names[0]}", "target angle", "to class mean", "min centre", "mean nearest"]
    print(f"{'people x samples':<18}{'loss':<13}" + "".join(f"{c:>18}" for c in columns) + f"{'s/run':>7}")
    for n in counts:
        for loss in names:
            runs, base = results[n, loss], results[n, names[0]]
            size = f"{runs[0]['people']} x {runs[0]['samples'] // runs[0]['people']}"
            line = (
                f"{size:<18}{loss:<13}{mean_std([r['test'] for r in runs]):>18}{mean_std(paired_gap(runs, base)):>18}"
            )
            for key in ("target", "to mean", "centre", "nearest"):
                line += f"{mean_std([r[key] for r in runs], 1):>18}"
            print(f"{line}{statistics.mean(r['seconds'] for r in runs):>7.0f}")
    print(f"\ntest EER minus {names[0]}'s, paired by seed, against the number of training identities")
    print(f"{'loss':<13}" + "".join(f"{n:>18}" for n in counts))
    for loss in names[1:]:
        gaps = [paired_gap(results[n, loss], results[n, names[0]]) for n in counts]
        print(f"{loss:<13}" + "".join(f"{mean_std(g):>18}" for g in gaps))


if __name__ == "__main__":
    main()
