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

from research.config import Config
from research.data.loader import SampleSet
from research.jax.model import FusionModel, normalize
from research.jax.predict import pad, predict, to_device, to_numpy
from research.robustness import RANGES, budget, impostors, target_classes


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


class Attacked:
    """A split whose batches come out attacked: `predict` reads them through `batches` as it reads a SampleSet,
    so the adversarial predictions go through the same code as the clean ones. Records the spent budget."""

    def __init__(self, model: FusionModel, data: SampleSet, device, modality: str, attack: dict, reference: dict):
        self.model, self.data, self.device, self.modality, self.attack = model, data, device, modality, attack
        self.reference = reference  # "labels" (N,) or "references" (N, E): the objective, by sample index
        self.spent: dict[str, list[np.ndarray]] = {}

    def batches(self, batch_size: int, **kw):
        start = 0
        with self.data.batches(batch_size, **kw) as batches:
            for batch in batches:
                n = len(batch["target"])
                rows = slice(start, start + n)  # shuffle=False: samples in index order
                start = rows.stop
                tensors = to_device(pad(batch, batch_size), self.device)  # one shape: one compilation
                objective = {
                    k: jnp.asarray(np.resize(v[rows], (batch_size, *v.shape[1:]))) for k, v in self.reference.items()
                }
                objective["targeted"] = self.attack["targeted"]
                if self.attack["name"] == "fgsm":
                    adv = fgsm(self.model, tensors, self.modality, eps=self.attack["eps"], **objective)
                else:
                    kwargs = {k: self.attack[k] for k in ("eps", "steps", "step_size", "random_start", "seed")}
                    adv = pgd(self.model, tensors, self.modality, **kwargs, **objective)
                adv = to_numpy(adv)[:n]
                for key, value in budget(batch[self.modality], adv).items():
                    self.spent.setdefault(key, []).append(value)
                yield batch | {self.modality: adv}


def attack_split(
    model: FusionModel, data: SampleSet, cfg: Config, device, modality: str, attack: dict, classes: int
) -> tuple[dict, dict[str, np.ndarray]]:
    """Predictions on the attacked split and the budget spent per sample ({"linf", "snr_db"} (N,)), plus the
    attack's goal per sample ("target_class" for targeted identification attacks).

    attack: {"name": "fgsm" | "pgd", "eps", "targeted", and for pgd "steps", "step_size", "random_start",
    "seed"}. A split with every label known is attacked through the classification loss (over `classes`
    classes), else through the embedding (verification).
    """
    model.eval()
    labels, targeted = data.labels("target"), attack["targeted"]
    goal: dict[str, np.ndarray] = {}
    if (labels >= 0).all():
        chosen = target_classes(labels, classes, attack.get("seed", 0)) if targeted else labels
        reference = {"labels": chosen.astype(np.int32)}
        goal = {"target_class": chosen} if targeted else {}
    else:
        clean = predict(model, data, cfg, device)["embedding"]  # (N, E)
        partner = impostors(data.labels("subject"), attack.get("seed", 0)) if targeted else np.arange(len(labels))
        reference = {"references": clean[partner]}
    attacked = Attacked(model, data, device, modality, attack, reference)
    preds = predict(model, attacked, cfg, device)
    return preds, {k: np.concatenate(v) for k, v in attacked.spent.items()} | goal
