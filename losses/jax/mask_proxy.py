"""Masked Proxy (MP) and Multinomial Masked Proxy (MMP) losses for speaker embeddings.

Lian, Vinod Kumar, Dhamyal, Raj, Singh, "Masked Proxy Loss for Text-Independent Speaker Verification",
Interspeech 2021 (arXiv 2011.04491), following the authors' code (loss/mp_balance.py, loss/mmp_balance.py in
github.com/jlian2/Masked-Proxy-Loss-for-Text-Indepedent-Speaker-Verification).

A proxy loss compares each sample with one learned proxy per class; a pair loss compares samples with each
other. MP does both: each class that appears in the batch gets its proxy *masked*, i.e. replaced by the
centroid of its other samples in the batch, while the classes absent from the batch keep their proxies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from losses.jax.common import centres, keep_mask, kept_mean, polar, reject_unsupported, safe_labels, scalar, upcast


def queries_and_centroids(
    x: jax.Array, labels: jax.Array, keep: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Split a batch (B, D) by class: for every class with >= 2 kept samples, its first kept sample in batch
    order is the query and the mean of its other kept samples the centroid -> (queries (B,) bool, the samples
    that are queries; centroids (B, D), row i the centroid of query i, finite but meaningless elsewhere).
    The authors' sampler draws M utterances per speaker; with M = 2 the centroid is the second utterance.
    Samples of classes seen once in the batch take no part. Fixed shapes: one row per sample, masked.
    """
    keep = keep_mask(keep, x)
    same = (labels[:, None] == labels[None, :]) & keep[:, None] & keep[None, :]  # (B, B)
    count = same.sum(axis=1)  # (B,) kept samples of each sample's class (0 for a dropped sample)
    earlier = jnp.tril(same, k=-1).any(axis=1)  # (B,) an earlier kept sample has the same class
    queries = keep & ~earlier & (count >= 2)  # (B,)
    others = (same.astype(x.dtype) @ x - x) / jnp.maximum(count - 1, 1)[:, None].astype(x.dtype)  # (B, D)
    return queries, others


def mask_proxy_loss(
    query: jax.Array,
    centroid: jax.Array,
    classes: jax.Array,
    proxies: jax.Array,
    w: jax.Array | float,
    b: jax.Array | float,
    *,
    keep: jax.Array | None = None,
    lamb: float = 0.5,
    multinomial: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """MP or MMP loss over the kept rows (the queries) -> (loss, masked logits (B, C)).

    query (B, D) unit vectors, centroid (B, D) means of unit vectors, classes (B,) labels, distinct over the
    kept rows; proxies (C, D) unit vectors, S(u, v) = w <u, v> + b. K = the masked centres: proxies with row
    classes[j] replaced by centroid j (by its unit vector for MMP), for every kept row j. Means over kept rows:
        MP:  L = mean_i CE(S(q_i, K), classes_i) + lambda R
        MMP: L = log(1 + sum_i e^{-S(q_i, c_i)})                       (positive pairs, one log)
               + mean_i log(1 + sum_{k not in batch} e^{S(q_i, p_k)})   (negative proxies)
               + mean_i log(1 + sum_{j != i} e^{S(q_i, c_j)})           (negative centroids)
               + lambda R
        R = mean_j CE(S(c_j, p_classes), j): each centroid picks its own proxy among the batch's proxies,
        the only term that trains in-batch proxies.
    Written from the authors' code; the paper's notation may group the terms differently. No kept row: 0.
    """
    query, centroid, proxies = upcast(query), upcast(centroid), upcast(proxies)
    w, b = scalar(w, query), scalar(b, query)
    keep = keep_mask(keep, query)
    classes = safe_labels(classes, keep)
    eye = jnp.eye(len(classes), dtype=bool)  # (B, B)
    own = w * centroid @ proxies[classes].T + b  # (B, B) S(c_j, p_classes_k)
    regulariser = kept_mean(cross_entropy_over(own, keep[None, :] | eye, eye), keep)
    pair_centres = polar(centroid)[0] if multinomial else centroid
    pairs = w * query @ pair_centres.T + b  # (B, B)
    member = jax.nn.one_hot(classes, len(proxies), dtype=query.dtype) * keep[:, None]  # (B, C) kept row j -> class
    in_batch = member.max(axis=0) > 0  # (C,)
    logits = jnp.where(in_batch, pairs @ member, w * query @ proxies.T + b)  # (B, C) masked logits
    if not multinomial:
        target = jax.nn.one_hot(classes, len(proxies), dtype=bool)  # (B, C)
        main = kept_mean(cross_entropy_over(logits, jnp.ones_like(target), target), keep)
        return main + lamb * regulariser, logits
    positive = log1p_sum_exp(jnp.where(keep, -jnp.diagonal(pairs), -jnp.inf))
    negative_proxies = kept_mean(log1p_sum_exp(jnp.where(in_batch, -jnp.inf, logits)), keep)
    negative_pairs = kept_mean(log1p_sum_exp(jnp.where(eye | ~keep[None, :], -jnp.inf, pairs)), keep)
    return positive + negative_proxies + negative_pairs + lamb * regulariser, logits


def cross_entropy_over(logits: jax.Array, allowed: jax.Array, target: jax.Array) -> jax.Array:
    """Per row: -log softmax over the allowed columns at the one target column (allowed) -> (rows,)."""
    log_p = jax.nn.log_softmax(jnp.where(allowed, logits, -jnp.inf), axis=-1)
    return -jnp.where(target, log_p, jnp.zeros_like(log_p)).sum(axis=-1)


def log1p_sum_exp(a: jax.Array) -> jax.Array:
    """log(1 + sum_k e^{a_k}) over the last axis; entries at -inf drop out, an all -inf row gives 0."""
    zero = jnp.zeros_like(a[..., :1])
    return jax.nn.logsumexp(jnp.concatenate([zero, a], axis=-1), axis=-1)


class MaskProxy(nnx.Module):
    """MP / MMP head: class proxies (C, D) and the learned similarity scale w and bias b.

    Defaults from the authors' code: lambda = 0.5, w = 10, b = -5 (their MMP code writes b = +5 with the
    opposite sign; same loss). Embeddings are L2-normalised inside, as in their trainer. Needs batches with
    several samples per class (a class-balanced sampler); a batch with no class seen twice among the kept
    samples gives a zero loss that still backpropagates. `forward` returns the plain proxy scores (B, C) as
    its logits (the masked logits are meaningful on query rows only; `mask_proxy_loss` returns them).
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        multinomial: bool = False,
        lamb: float = 0.5,
        scale_init: float = 10.0,
        bias_init: float = -5.0,
        label_smoothing: float = 0.0,
        class_weights: jax.Array | None = None,
        rngs: nnx.Rngs,
    ):
        reject_unsupported("mask_proxy", class_weights, label_smoothing)
        self.proxies = centres(classes, dim, rngs=rngs)  # (C, D)
        self.w = nnx.Param(jnp.asarray(float(scale_init), dtype=jnp.float32))
        self.b = nnx.Param(jnp.asarray(float(bias_init), dtype=jnp.float32))
        self.multinomial, self.lamb = multinomial, lamb

    def scores(self, embedding: jax.Array) -> jax.Array:
        """(B, D) -> (B, C) w cos(x, p) + b."""
        return self.w[...] * polar(upcast(embedding))[0] @ polar(upcast(self.proxies[...]))[0].T + self.b[...]

    def __call__(
        self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        x = polar(upcast(embedding))[0]  # (B, D)
        queries, centroids = queries_and_centroids(x, labels, keep)  # (B,), (B, D)
        p = polar(upcast(self.proxies[...]))[0]  # (C, D)
        loss, _ = mask_proxy_loss(
            x,
            centroids,
            labels,
            p,
            self.w[...],
            self.b[...],
            keep=queries,
            lamb=self.lamb,
            multinomial=self.multinomial,
        )
        return loss, self.scores(embedding)
