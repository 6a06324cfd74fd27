"""ArcFace: additive angular margin.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019 (arXiv 1801.07698),
following the authors' insightface code for the target logit. `detach_margin` gives the gradient of insightface's
December 2022 form (recognition/arcface_torch/losses.py, commit 657ae30e "fixed arcface impl": the margin added
to arccos(cos) inside `torch.no_grad()`): the loss value of the margin, the gradient of s cos theta.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from losses.jax.common import ClassHead, centres, cosine, keep_mask, register_class_weights, safe_labels, upcast
from losses.jax.softmax import softmax_loss


def arcface_target(
    cos: jax.Array, *, margin: float, easy_margin: bool = False, detach_margin: bool = False
) -> jax.Array:
    """The target cosine with margin, elementwise on cos theta_y.

    phi = cos(theta + m) = cos theta cos m - sin theta sin m while theta + m <= pi. Past that point
    cos(theta + m) turns back up (it is not monotonic in theta), so insightface switches branch:
        default:      phi = cos theta - m sin m    when theta > pi - m  (cos theta <= cos(pi - m))
        easy_margin:  phi = cos theta              when theta > pi / 2  (cos theta <= 0)
    The default keeps phi decreasing in theta (it steps down at theta = pi - m, from -1 to -cos m - m sin m);
    easy_margin jumps back up at pi / 2 (from -sin m to 0), i.e. drops the margin for hard samples.
    Gradients are real unless detach_margin: then phi = cos + stopgrad(phi - cos), the same value with the
    gradient of cos theta (d phi / d cos = 1), as insightface's no_grad form. sin theta = sqrt(1 - cos^2)
    has an infinite derivative at cos = +-1; the clamp at 1e-12 keeps it finite there (value error <= 1e-6
    sin m) and changes nothing elsewhere in float32, where 1 - cos^2 >= 1.2e-7 for any cos != +-1.
    """
    sin = jnp.sqrt(jnp.maximum((1.0 - cos) * (1.0 + cos), 1e-12))
    phi = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        phi = jnp.where(cos > 0, phi, cos)
    else:
        phi = jnp.where(cos > math.cos(math.pi - margin), phi, cos - math.sin(math.pi - margin) * margin)
    return cos + jax.lax.stop_gradient(phi - cos) if detach_margin else phi


def arcface_loss(
    cos: jax.Array,
    labels: jax.Array,
    *,
    keep: jax.Array | None = None,
    scale: float = 64.0,
    margin: float = 0.5,
    easy_margin: bool = False,
    detach_margin: bool = False,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of s cos theta_j with the target replaced by s phi(theta_y) -> (loss, logits (B, C)).

    L = -log( e^{s cos(theta_y + m)} / (e^{s cos(theta_y + m)} + sum_{j != y} e^{s cos theta_j}) ),
    with the theta + m > pi treatment of `arcface_target`. Mean over the kept samples. detach_margin: same value,
    the gradient of s cos theta_y at the target (`arcface_target`).
    """
    cos = upcast(cos)  # (B, C)
    keep = keep_mask(keep, cos)
    labels = safe_labels(labels, keep)
    target = arcface_target(
        jnp.take_along_axis(cos, labels[:, None], axis=1),
        margin=margin,
        easy_margin=easy_margin,
        detach_margin=detach_margin,
    )  # (B, 1)
    logits = scale * cos.at[jnp.arange(len(labels)), labels].set(target[:, 0])
    return softmax_loss(logits, labels, keep=keep, label_smoothing=label_smoothing, class_weights=class_weights)


class Arcface(ClassHead):
    """ArcFace head. Defaults s = 64, m = 0.5, easy_margin = False (paper and insightface), detach_margin = False."""

    def __init__(
        self,
        dim: int,
        classes: int,
        *,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
        detach_margin: bool = False,
        label_smoothing: float = 0.0,
        class_weights: jax.Array | None = None,
        rngs: nnx.Rngs,
    ):
        self.weight = centres(classes, dim, rngs=rngs)  # (C, D)
        self.scale, self.margin, self.easy_margin, self.detach_margin = scale, margin, easy_margin, detach_margin
        self.label_smoothing = label_smoothing
        register_class_weights(self, class_weights)

    def margin_logits(self, cos: jax.Array, norms: jax.Array, labels: jax.Array, *, lamb=None, bias=None) -> jax.Array:
        """The training logits (B, C) of cosines (B, C), embedding norms (B, 1) and labels: the margin applied as
        the loss applies it (`block_logits` calls it on a block of classes). `lamb` and `bias` stand in for
        a SphereFace head's annealed lambda and a SphereFace2 head's bias where the caller holds them."""
        return arcface_loss(
            cos,
            labels,
            scale=self.scale,
            margin=self.margin,
            easy_margin=self.easy_margin,
            detach_margin=self.detach_margin,
        )[1]

    def scores(self, embedding: jax.Array) -> jax.Array:
        """(B, D) -> (B, C) s cos theta."""
        return self.scale * cosine(embedding, self.weight[...])[0]

    def __call__(
        self, embedding: jax.Array, labels: jax.Array, keep: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        cos, _ = cosine(embedding, self.weight[...])  # (B, C)
        return arcface_loss(
            cos,
            labels,
            keep=keep,
            scale=self.scale,
            margin=self.margin,
            easy_margin=self.easy_margin,
            detach_margin=self.detach_margin,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )
