"""What the margin heads do to their training identities' geometry, against plain softmax, at the same budget.

The claim (ArcFace, CosFace, SphereFace2 papers): a margin head pulls each embedding towards its class centre
(a smaller mean target angle to the head's row W_y) and pushes the centres apart (a larger minimum angle
between two centres, and a larger mean angle from each centre to its nearest one). Measured on the
benchmark's embedding-level data (an MLP on synthetic identity vectors, no encoders): 40 identities x 10
samples, 300 steps of 256 with the trainer's optimizer, the published hyper-parameters, softmax on the
MLP's unnormalised output as in the papers' baseline. Benchmarked over seeds 0-4 (one process, 2-core CPU
shared with other jobs, load average 17), degrees, mean +- std over seeds:

    python benchmarks/torch/verification_by_loss.py --identities 40 --samples 400 --steps 300 --seeds 0,1,2,3,4

    head          target angle    min centre angle    mean nearest centre angle
    softmax       48.3 +- 0.6     59.9 +- 1.9         67.6 +- 0.3
    arcface       40.0 +- 0.5     68.1 +- 1.4         72.9 +- 1.1
    cosface       45.6 +- 0.3     65.4 +- 1.2         71.8 +- 0.6
    sphereface2   55.2 +- 0.6     66.5 +- 1.3         71.5 +- 0.5

The test compares means of 3 seeds, whose difference to softmax's has a chance spread (one std) of about
0.4 (target, CosFace), 1.4 (min centre) and 0.7 (nearest) degrees. The margins below are about 2-3 of those
stds and at most half of each measured gap (smallest gaps: 2.7, 5.5, 3.9).

Re-measured on 2026-12-07 (benchmarks/torch/statistical_margins.py --checks margin_geometry: the test's seeds at 2 and
1 threads and OMP_NUM_THREADS=1, then the disjoint seed sets 3-5, 6-8, 9-11): the fixture pins one thread, so the
thread settings change nothing; over the seed sets the smallest margins over the bars are 0.96 degrees (CosFace
target), 1.11 (SphereFace2 min centre) and 1.62 (SphereFace2 nearest centre); every target angle stays under
56 degrees (bar 60).

Not asserted because it does not hold: SphereFace2's target angle to its own row W_y is larger than
softmax's (55 vs 48 degrees; its embeddings are tight around their class mean, 32 vs 34, but the row sits
off that mean). With a LayerNorm ending the MLP, as the fusion models end, softmax's target angle falls to
33.5 (smallest of the four) and its centre angles reach the margin heads' (docs/losses.md, "What the margins
do to the training identities' geometry").
"""

import numpy as np
import pytest
import torch

from benchmarks.torch.verification_by_loss import angles, train_on_vectors, vectors

pytestmark = pytest.mark.statistical
SEEDS = (0, 1, 2)
MARGIN_HEADS = ("arcface", "cosface", "sphereface2")
# degrees by which a margin head's 3-seed mean must beat softmax's (see the module docstring)
TARGET_MARGIN = {"arcface": 3.0, "cosface": 1.0}
MIN_CENTRE_MARGIN = 2.5
NEAREST_MARGIN = 1.8


def _geometry(loss: str, seed: int) -> dict[str, float]:
    x, labels = vectors(40, 10, np.random.default_rng([seed, 0]))  # (400, 32), (400,)
    mlp, head = train_on_vectors(loss, x, labels, seed=seed, steps=300)
    with torch.no_grad():
        embeddings = mlp(torch.from_numpy(x)).numpy()  # (400, 32)
    return angles(embeddings, labels, head)


@pytest.fixture(scope="module")
def geometry() -> dict[str, dict[str, float]]:
    return mean_geometry(SEEDS)


def mean_geometry(seeds: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Each head's mean over `seeds` of each angle (degrees), trained on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {loss: [_geometry(loss, seed) for seed in seeds] for loss in ("softmax", *MARGIN_HEADS)}
    finally:
        torch.set_num_threads(threads)
    return {loss: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for loss, rs in runs.items()}


@pytest.mark.parametrize("loss", sorted(TARGET_MARGIN))
def test_margin_heads_pull_embeddings_closer_to_their_centre(geometry, loss):
    assert geometry[loss]["target"] < geometry["softmax"]["target"] - TARGET_MARGIN[loss]


@pytest.mark.parametrize("loss", MARGIN_HEADS)
def test_margin_heads_push_class_centres_apart(geometry, loss):
    assert geometry[loss]["centre"] > geometry["softmax"]["centre"] + MIN_CENTRE_MARGIN
    assert geometry[loss]["nearest"] > geometry["softmax"]["nearest"] + NEAREST_MARGIN


def test_every_head_was_trained(geometry):
    # Guards the comparisons above against a broken setup: random directions in 32 dimensions are about
    # 90 degrees apart, so an untrained head would show target angles near 90.
    for loss, measured in geometry.items():
        assert measured["target"] < 60.0, loss
