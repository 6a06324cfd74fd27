"""White-box L-inf attacks on one input modality of a trained model: FGSM and PGD (Madry et al. 2018).

The attack follows the gradient of the model's loss with respect to the input only (weights frozen, eval
mode): on a split whose classes were seen in training, the cross-entropy of the decision; on a verification
split (unseen identities), the cosine between the sample's embedding and a reference embedding. Untargeted
attacks ascend the loss of the true label (or move the embedding away from its clean value); targeted ones
descend the loss of a chosen wrong class (or move the embedding towards an impostor's). Every step is
projected onto the eps-ball around the clean input and clipped to the valid range (research/robustness.py).

    x' = clip(x + eps sign(grad))                                                       FGSM
    x_0 = clip(x + U(-eps, eps)); x_{t+1} = clip(x + clamp(x_t + a sign(grad) - x, -eps, eps))   PGD
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from research.jax.model import FusionModel, normalize
from research.jax.predict import pad, to_device, to_numpy
from research.robustness import RANGES, run_attack


def attack_loss(model: FusionModel, batch: dict, *, labels=None, references=None, targeted: bool = False) -> jax.Array:
    """The summed per-sample objective the attack ascends (a sum, so each sample's gradient is its own)."""
    out = model(batch)
    if references is None:
        value = -jnp.take_along_axis(out["log_probs"].astype(jnp.float32), labels[:, None], axis=1).sum()  # NLL
    else:
        value = -(normalize(out["embedding"].astype(jnp.float32)) * normalize(references)).sum()  # cosines
    return -value if targeted else value


@partial(jax.jit, static_argnames=("graphdef", "modality", "targeted"))
def _gradient(graphdef, state, batch, modality, labels, references, targeted):
    def loss(x):
        return attack_loss(nnx.merge(graphdef, state), {**batch, modality: x}, labels=labels,
                           references=references, targeted=targeted)  # fmt: skip

    return jax.grad(loss)(batch[modality])


def input_gradient(model: FusionModel, batch: dict, modality: str, **objective) -> jax.Array:
    """d attack_loss / d batch[modality], same shape as the input; parameters are constants (jitted)."""
    graphdef, state = nnx.split(model)
    return _gradient(graphdef, state, batch, modality, objective.get("labels"), objective.get("references"),
                     objective.get("targeted", False))  # fmt: skip


def fgsm(
    model: FusionModel, batch: dict, modality: str, *, eps: float, labels=None, references=None, targeted: bool = False
) -> jax.Array:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps along the gradient's sign."""
    lo, hi = RANGES[modality]
    grad = input_gradient(model, batch, modality, labels=labels, references=references, targeted=targeted)
    return jnp.clip(batch[modality] + eps * jnp.sign(grad), lo, hi)


def pgd(
    model: FusionModel,
    batch: dict,
    modality: str,
    *,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool = True,
    labels=None,
    references=None,
    targeted: bool = False,
    seed: int = 0,
) -> jax.Array:
    """Projected gradient descent: `steps` sign steps of `step_size` from a uniform start in the eps-ball."""
    lo, hi = RANGES[modality]
    objective = {"labels": labels, "references": references, "targeted": targeted}
    x = batch[modality]
    adv = x
    if random_start:
        noise = jax.random.uniform(jax.random.key(seed), x.shape, x.dtype, minval=-eps, maxval=eps)
        adv = jnp.clip(adv + noise, lo, hi)
    for _ in range(steps):
        grad = input_gradient(model, {**batch, modality: adv}, modality, **objective)
        adv = adv + step_size * jnp.sign(grad)
        adv = jnp.clip(x + jnp.clip(adv - x, -eps, eps), lo, hi)
    return adv


def adversarial(
    model: FusionModel, batch: dict, modality: str, attack: dict, objective: dict, device: Mesh, size: int
) -> np.ndarray:
    """One NumPy batch's `modality` input attacked as `attack` says (research/robustness.py attack_split),
    towards the per-sample `objective` ("labels" (B,) or "references" (B, E)). A short batch is padded to
    the split's batch `size`, so the gradient compiles once."""
    n = len(batch["target"])
    tensors = to_device(pad(batch, size), device)
    goal = {k: jnp.asarray(np.resize(v, (size, *v.shape[1:]))) for k, v in objective.items()}  # int64 -> int32
    return to_numpy(run_attack(fgsm, pgd, model, tensors, modality, attack, goal))[:n]
