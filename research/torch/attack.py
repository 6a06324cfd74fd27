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

import numpy as np
import torch
import torch.nn.functional as F

from research.robustness import RANGES, run_attack
from research.torch.model import FusionModel
from research.torch.predict import to_device


def attack_loss(
    model: FusionModel, batch: dict, *, labels=None, references=None, targeted: bool = False
) -> torch.Tensor:
    """The summed per-sample objective the attack ascends (a sum, so each sample's gradient is its own)."""
    out = model(batch)
    if references is None:
        value = -out["log_probs"].float().gather(1, labels[:, None]).sum()  # NLL of the labels
    else:
        value = -F.cosine_similarity(out["embedding"].float(), references, dim=-1).sum()
    return -value if targeted else value


def input_gradient(model: FusionModel, batch: dict, modality: str, **objective) -> torch.Tensor:
    """d attack_loss / d batch[modality], same shape as the input; no parameter gradient is kept."""
    with torch.enable_grad():
        x = batch[modality].detach().requires_grad_(True)
        return torch.autograd.grad(attack_loss(model, {**batch, modality: x}, **objective), x)[0]


def fgsm(
    model: FusionModel, batch: dict, modality: str, *, eps: float, labels=None, references=None, targeted: bool = False
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps along the gradient's sign."""
    lo, hi = RANGES[modality]
    grad = input_gradient(model, batch, modality, labels=labels, references=references, targeted=targeted)
    return (batch[modality] + eps * grad.sign()).clamp(lo, hi)


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
) -> torch.Tensor:
    """Projected gradient descent: `steps` sign steps of `step_size` from a uniform start in the eps-ball."""
    lo, hi = RANGES[modality]
    objective = {"labels": labels, "references": references, "targeted": targeted}
    x = batch[modality]
    adv = x.clone()
    if random_start:
        generator = torch.Generator(x.device).manual_seed(seed)
        adv = (adv + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(lo, hi)
    for _ in range(steps):
        grad = input_gradient(model, {**batch, modality: adv}, modality, **objective)
        adv = adv + step_size * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(lo, hi)
    return adv


def adversarial(
    model: FusionModel, batch: dict, modality: str, attack: dict, objective: dict, device: torch.device, size: int
) -> np.ndarray:
    """One NumPy batch's `modality` input attacked as `attack` says (research/robustness.py attack_split),
    towards the per-sample `objective` ("labels" (B,) or "references" (B, E)). `size` is the split's batch
    size (jax pads a short last batch to it; torch needs no padding)."""
    tensors = to_device(batch, device)
    goal = {k: torch.from_numpy(v).to(device) for k, v in objective.items()}
    return run_attack(fgsm, pgd, model, tensors, modality, attack, goal).cpu().numpy()
