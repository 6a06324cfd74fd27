"""Masked Proxy (MP) and Multinomial Masked Proxy (MMP) losses for speaker embeddings.

Lian, Vinod Kumar, Dhamyal, Raj, Singh, "Masked Proxy Loss for Text-Independent Speaker Verification",
Interspeech 2021 (arXiv 2011.04491), following the authors' code (loss/mp_balance.py, loss/mmp_balance.py in
github.com/jlian2/Masked-Proxy-Loss-for-Text-Indepedent-Speaker-Verification).

A proxy loss compares each sample with one learned proxy per class; a pair loss compares samples with each
other. MP does both: each class that appears in the batch gets its proxy *masked*, i.e. replaced by the
centroid of its other samples in the batch, while the classes absent from the batch keep their proxies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses.torch.common import centres, polar, reject_unsupported, scalar, upcast


def queries_and_centroids(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a batch (B, D) by class: for every class with >= 2 samples, its first sample in batch order is
    the query and the mean of its other samples the centroid -> (queries (P, D), centroids (P, D),
    classes (P,)). The authors' sampler draws M utterances per speaker; with M = 2 the centroid is the
    second utterance. Samples of classes seen once in the batch take no part.
    """
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)  # (K,)
    order = torch.arange(len(labels), device=labels.device)
    first = torch.full_like(classes, len(labels)).scatter_reduce(0, inverse, order, "amin")  # (K,)
    sums = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device).index_add(0, inverse, x)
    keep = counts >= 2
    queries = x[first[keep]]  # (P, D)
    centroids = (sums[keep] - queries) / (counts[keep, None] - 1).to(x.dtype)  # (P, D)
    return queries, centroids, classes[keep]


def mask_proxy_loss(
    query: torch.Tensor,
    centroid: torch.Tensor,
    classes: torch.Tensor,
    proxies: torch.Tensor,
    w: torch.Tensor | float,
    b: torch.Tensor | float,
    lamb: float = 0.5,
    multinomial: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MP or MMP loss -> (loss, masked logits (P, C)).

    query (P, D) unit vectors, centroid (P, D) means of unit vectors, classes (P,) distinct labels,
    proxies (C, D) unit vectors, S(u, v) = w <u, v> + b. K = the masked centres: proxies with row
    classes[j] replaced by centroid j (by its unit vector for MMP).
        MP:  L = mean_i CE(S(q_i, K), classes_i) + lambda R
        MMP: L = log(1 + sum_i e^{-S(q_i, c_i)})                       (positive pairs, one log)
               + mean_i log(1 + sum_{k not in batch} e^{S(q_i, p_k)})   (negative proxies)
               + mean_i log(1 + sum_{j != i} e^{S(q_i, c_j)})           (negative centroids)
               + lambda R
        R = mean_j CE(S(c_j, p_classes), j): each centroid picks its own proxy among the batch's proxies,
        the only term that trains in-batch proxies.
    Written from the authors' code; the paper's notation may group the terms differently.
    """
    with torch.autocast(query.device.type, enabled=False):
        query, centroid, proxies = upcast(query), upcast(centroid), upcast(proxies)
        w, b = scalar(w, query), scalar(b, query)
        own = torch.arange(len(classes), device=query.device)  # (P,)
        regulariser = F.cross_entropy(w * centroid @ proxies[classes].T + b, own)
        pair_centres = polar(centroid)[0] if multinomial else centroid
        pairs = w * query @ pair_centres.T + b  # (P, P)
        logits = (w * query @ proxies.T + b).index_copy(1, classes, pairs)  # (P, C) masked logits
        if not multinomial:
            return F.cross_entropy(logits, classes) + lamb * regulariser, logits
        positive = F.softplus(torch.logsumexp(-pairs.diagonal(), dim=0))
        in_batch = torch.zeros_like(logits, dtype=torch.bool).index_fill(1, classes, True)
        negative_proxies = log1p_sum_exp(logits.masked_fill(in_batch, float("-inf"))).mean()
        eye = torch.eye(len(classes), dtype=torch.bool, device=query.device)
        negative_pairs = log1p_sum_exp(pairs.masked_fill(eye, float("-inf"))).mean()
        return positive + negative_proxies + negative_pairs + lamb * regulariser, logits


def log1p_sum_exp(a: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_k e^{a_k}) over the last axis; entries at -inf drop out, an all -inf row gives 0."""
    zero = torch.zeros_like(a[..., :1])
    return torch.logsumexp(torch.cat([zero, a], dim=-1), dim=-1)


class MaskProxy(nn.Module):
    """MP / MMP head: class proxies (C, D) and the learned similarity scale w and bias b.

    Defaults from the authors' code: lambda = 0.5, w = 10, b = -5 (their MMP code writes b = +5 with the
    opposite sign; same loss). Embeddings are L2-normalised inside, as in their trainer. Needs batches with
    several samples per class (a class-balanced sampler); a batch with no class seen twice gives a zero
    loss that still backpropagates. `forward` returns the plain proxy scores (B, C) as its logits (the
    masked logits have one row per query; `mask_proxy_loss` returns them).
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        multinomial: bool = False,
        lamb: float = 0.5,
        scale_init: float = 10.0,
        bias_init: float = -5.0,
        label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        reject_unsupported("mask_proxy", class_weights, label_smoothing)
        self.proxies = centres(classes, dim)  # (C, D)
        self.w = nn.Parameter(torch.tensor(float(scale_init)))
        self.b = nn.Parameter(torch.tensor(float(bias_init)))
        self.multinomial, self.lamb = multinomial, lamb

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C) w cos(x, p) + b."""
        with torch.autocast(embedding.device.type, enabled=False):
            return self.w * polar(upcast(embedding))[0] @ F.normalize(upcast(self.proxies), dim=1).T + self.b

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(embedding.device.type, enabled=False):
            x = polar(upcast(embedding))[0]  # (B, D)
            query, centroid, classes = queries_and_centroids(x, labels)
            if len(classes) == 0:  # no class seen twice: a zero that keeps every parameter in the graph (DDP)
                loss = 0.0 * (x.sum() + self.w + self.b + self.proxies.sum())
            else:
                p = F.normalize(upcast(self.proxies), dim=1)  # (C, D)
                loss, _ = mask_proxy_loss(query, centroid, classes, p, self.w, self.b, self.lamb, self.multinomial)
        return loss, self.scores(embedding)
