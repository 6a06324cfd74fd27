"""Does ArcFace's detach_margin (insightface's December 2022 form) remove the stall at theta = pi - m?

    python benchmarks/torch/arcface_stall.py [--identities 100,300] [--seeds 0,1,2] [--steps 1000]
        [--toy-steps 300] [--starts 140,151.4,165]

Two measurements, each for ArcFace (s = 64, m = 0.5) with the true gradient and with detach_margin:

1. `vectors`: the run of docs/losses.md "Known results" where ArcFace stuck at a target angle of about
   pi - m = 151.4 degrees: embedding-level data of benchmarks/torch/verification_by_loss.py, 12000 training
   samples of --identities identities (100 x 120, 300 x 40), its MLP (32 -> 128 -> 32) and optimizer (AdamW
   lr 2e-3, weight decay 0.05 on matrices, warm-up then cosine), --steps steps of 256. Prints the mean target
   angle of the batch every tenth of the run, then per arm: test EER on 500 unseen identities, mean target angle
   on the training set, share of training samples with a target angle above 140 degrees (mean +- sample std
   over seeds, as verification_by_loss.py prints them).
2. `toy`: no model: 1000 free embeddings (100 classes x 10, D = 32) and the head's centres, all trained by Adam
   (lr 0.01, full batch) from embeddings placed at a given target angle (+- 2 degrees) to their class centre,
   for each angle of --starts. Prints the mean target angle at steps 0, 10, 30, 100, 300 (of --toy-steps).

A measurement, not a test; the numbers are in docs/losses.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import losses  # noqa: E402
from benchmarks.torch.verification_by_loss import TEST_PEOPLE, TEST_SAMPLES, TRIALS, angles, vectors  # noqa: E402
from research.config import Config  # noqa: E402
from research.metrics.geometry import target_angles  # noqa: E402
from research.metrics.verification import cosine_scores, eer, make_trials  # noqa: E402
from research.torch.trainer import make_optimizer, warmup_cosine  # noqa: E402

ARMS = {"arcface": {}, "arcface detach_margin": {"detach_margin": True}}


def batch_angle(embedding: torch.Tensor, labels: torch.Tensor, head) -> float:
    """Mean target angle (degrees) of a batch."""
    return math.degrees(target_angles(embedding.detach().numpy(), labels.numpy(), head.weight.detach().numpy()).mean())


def vectors_run(options: dict, seed: int, steps: int, people: int) -> dict:
    """verification_by_loss's vectors_run (12000 samples of `people`), with the head's options and an angle trace."""
    x, labels = vectors(people, 12000 // people, np.random.default_rng([seed, 0]))
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
    head = losses.build("torch", "arcface", dim=32, classes=people, **options)
    optimizer = make_optimizer(torch.nn.ModuleList([mlp, head]), Config())
    scheduler = warmup_cosine(optimizer, steps // 20, steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    order, trace = torch.Generator().manual_seed(seed), []
    for step in range(steps):
        batch = torch.randint(len(yt), (256,), generator=order)
        embedding = mlp(xt[batch])
        if step % (steps // 10) == 0:
            trace.append(batch_angle(embedding, yt[batch], head))
        value, _ = head(embedding, yt[batch])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        scheduler.step()
    test_x, subjects = vectors(TEST_PEOPLE, TEST_SAMPLES, np.random.default_rng([seed, 1]))
    with torch.no_grad():
        train_emb, test_emb = mlp(xt).numpy(), mlp(torch.from_numpy(test_x)).numpy()
    i, j, target = make_trials(subjects, TRIALS, seed)
    theta = np.degrees(target_angles(train_emb, labels, head.weight.detach().numpy()))
    return {
        "test": eer(cosine_scores(test_emb, i, j), target)[0],
        "target": angles(train_emb, labels, head)["target"],
        "stuck": float(np.mean(theta > 140)),
        "trace": trace,
    }


def toy_run(options: dict, seed: int, start_degrees: float, steps: int) -> list[float]:
    """Free embeddings at `start_degrees` (+- 2) from their centre, trained with the head -> angle trace."""
    torch.manual_seed(seed)  # the head's centres
    gen = torch.Generator().manual_seed(seed)
    head = losses.build("torch", "arcface", dim=32, classes=100, **options)
    labels = torch.arange(100).repeat_interleave(10)  # (1000,)
    w = head.weight.detach()[labels]  # (N, D) unit rows
    u = torch.randn(len(labels), 32, generator=gen)
    u = u - (u * w).sum(1, keepdim=True) * w  # orthogonal to the centre
    u = u / u.norm(dim=1, keepdim=True)
    angle = torch.deg2rad(start_degrees + 4 * (torch.rand(len(labels), 1, generator=gen) - 0.5))
    x = torch.nn.Parameter(torch.cos(angle) * w + torch.sin(angle) * u)  # (N, D)
    optimizer = torch.optim.Adam([x, *head.parameters()], lr=0.01)
    trace = {}
    for step in range(steps + 1):
        if step in (0, 10, 30, 100, 300, steps):
            trace[step] = batch_angle(x, labels, head)
        value, _ = head(x, labels)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", default="100,300", help="vectors: training identities, 12000 samples")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1000, help="vectors: training steps of 256")
    parser.add_argument("--toy-steps", type=int, default=300)
    parser.add_argument("--starts", default="140,151.4,165", help="toy: initial target angles, degrees")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny matmuls: more threads only contend on a shared CPU
    seeds = [int(s) for s in args.seeds.split(",")]
    for people in (int(n) for n in args.identities.split(",") if n):  # "" skips this part
        print(f"vectors: {people} identities x {12000 // people}, {args.steps} steps of 256, seeds {seeds}")
        for arm, options in ARMS.items():
            runs = [vectors_run(options, seed, args.steps, people) for seed in seeds]
            trace = " ".join(f"{a:.1f}" for a in np.mean([r["trace"] for r in runs], axis=0))
            print(f"  {arm:<22} batch target angle every {args.steps // 10} steps: {trace}")
            for key, name in (("test", "test EER"), ("target", "target angle"), ("stuck", "share > 140 deg")):
                values = [r[key] for r in runs]
                each = ", ".join(f"{v:.4f}" for v in values)
                print(f"  {'':<22} {name:<16} {np.mean(values):.4f} +- {np.std(values, ddof=1):.4f}  ({each})")
    print(f"toy: 1000 free embeddings (100 classes x 10, D 32), Adam lr 0.01 full batch, seed {seeds[0]}")
    for start in (float(a) for a in args.starts.split(",")):
        for arm, options in ARMS.items():
            trace = toy_run(options, seeds[0], start, args.toy_steps)
            print(f"  start {start:>5.1f}  {arm:<22} " + "  ".join(f"step {k}: {v:.1f}" for k, v in trace.items()))


if __name__ == "__main__":
    main()
