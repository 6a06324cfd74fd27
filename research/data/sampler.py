"""Identity-balanced batch order (data.sampler = pk): every batch holds P identities x K samples each.

What the pair losses (contrastive, triplet) and Mask Proxy need: positive pairs in every batch. A pure
function of (seed, epoch), like `pipeline.order`, and sharded the same way, so the two read alike:

    for each of the epoch's batches: P distinct identities drawn uniformly without replacement among the
    identities with at least K samples, then K distinct samples of each, uniformly without replacement;
    the batch is laid out identity by identity (K consecutive rows each).

Identities with fewer than K samples are skipped (never drawn): drawing with replacement would put the same
sample twice in a batch, a positive pair the loss solves for free. Fewer than P identities with K samples is
an error. Samples with an unknown label (-1) are never drawn. An epoch has as many batches as the random
order gives (n // batch size); unlike it, a sample may appear in several batches of an epoch, or in none.

Sharding: every rank reads its part of each global batch, so a torch rank's pair loss has positives to
see: when `world` divides P, rank r's part is the whole identities r, r + world, ... of the batch (P / world
identities x K samples); else its rows r, r + world, ... as in `pipeline.order` (P identities x K / world
samples when `world` divides K).
"""

from __future__ import annotations

import numpy as np


def pk_order(
    labels: np.ndarray,
    identities: int,
    samples: int,
    batches: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
) -> np.ndarray:
    """The sample indices one rank reads in an epoch of `batches` global batches of P = `identities` x
    K = `samples` rows; labels (N,) are the class of each sample (-1 = unknown)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels[labels >= 0], return_counts=True)
    eligible = classes[counts >= samples]  # identities with at least K samples
    if len(eligible) < identities:
        raise ValueError(
            f"data.sampler=pk needs {identities} identities (data.pk_identities) with at least {samples} samples "
            f"(data.pk_samples) each; the split has {len(eligible)}"
        )
    members = {c: np.flatnonzero(labels == c) for c in eligible}
    rng = np.random.default_rng([seed, epoch, 2])  # a stream of its own: not order's [seed, epoch]
    full = np.empty((batches, identities, samples), np.int64)  # (batches, P, K)
    for b in range(batches):
        for p, c in enumerate(rng.choice(eligible, identities, replace=False)):
            full[b, p] = rng.choice(members[c], samples, replace=False)
    if identities % world == 0:
        return full[:, rank::world].reshape(-1)  # (batches * P / world * K,)
    return full.reshape(batches, -1)[:, rank::world].reshape(-1)  # (batches * P * K / world,)
