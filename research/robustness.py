"""The framework-free parts of the adversarial study (experiments/attack.py): valid input ranges, the targets
of targeted attacks, the budget actually spent per sample, and the orchestration of an attacked split. The
gradient steps (FGSM, PGD) are the backend's (research/{torch,jax}/attack.py, its backend.py `adversarial`)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from research.config import Config
from research.data.loader import SampleSet
from research.predictions import first_copies

RANGES = {"face": (0.0, 1.0), "voice": (-1.0, 1.0)}  # pixels; waveform samples
ATTACKS = ("fgsm", "pgd")
PGD = ("eps", "steps", "step_size", "random_start", "seed")  # the settings of a PGD attack


def run_attack(fgsm: Callable, pgd: Callable, model, batch: dict, modality: str, attack: dict, goal: dict):
    """The backend's fgsm or pgd (research/{torch,jax}/attack.py) on one batch, as `attack` names it, with its
    settings, towards `goal` ("labels" or "references", the backend's arrays)."""
    goal = goal | {"targeted": attack["targeted"]}
    if attack["name"] == "fgsm":
        return fgsm(model, batch, modality, eps=attack["eps"], **goal)
    return pgd(model, batch, modality, **{k: attack[k] for k in PGD}, **goal)


def target_classes(labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    """A wrong class per sample (N,), uniform over the other classes, fixed by the seed."""
    shift = np.random.default_rng([seed, 7]).integers(1, classes, size=len(labels))
    return (labels + shift) % classes


def impostors(subjects: np.ndarray, seed: int) -> np.ndarray:
    """For each sample, the index of a random sample of another subject (N,), fixed by the seed: whose
    embedding a targeted attack on a verification split moves towards."""
    rng = np.random.default_rng([seed, 8])
    found = np.empty(len(subjects), np.int64)
    for i, s in enumerate(subjects):
        others = np.flatnonzero(subjects != s)
        found[i] = others[rng.integers(len(others))]
    return found


def budget(clean: np.ndarray, adversarial: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample (N,): the L-inf norm of the perturbation and its SNR in dB, 10 log10(sum x^2 / sum delta^2)
    over the sample's values (inf where nothing changed)."""
    delta = (adversarial.astype(np.float64) - clean.astype(np.float64)).reshape(len(clean), -1)  # (N, D)
    signal = (clean.astype(np.float64).reshape(len(clean), -1) ** 2).sum(1)  # (N,)
    noise = (delta**2).sum(1)  # (N,)
    with np.errstate(divide="ignore"):
        snr = np.where(noise > 0, 10 * np.log10(signal / np.where(noise > 0, noise, 1.0)), np.inf)
    return {"linf": np.abs(delta).max(1), "snr_db": snr}


class Attacked:
    """A split whose batches come out attacked: `predict` reads them through `batches` as it reads a SampleSet,
    so the adversarial predictions go through the same code as the clean ones. Records the spent budget."""

    def __init__(
        self, backend: ModuleType, model, data: SampleSet, device, modality: str, attack: dict, reference: dict
    ):
        self.backend, self.model, self.data, self.device = backend, model, data, device
        self.modality, self.attack = modality, attack
        self.reference = reference  # "labels" (N,) or "references" (N, E): the objective, by sample index
        self.spent: dict[str, list[np.ndarray]] = {}

    def batches(self, batch_size: int, **kw):
        with self.data.batches(batch_size, **kw) as batches:
            for batch in batches:
                rows = batch["index"]  # evaluation batches name their samples (whole voices come longest first)
                objective = {k: v[rows] for k, v in self.reference.items()}
                adv = self.backend.adversarial(
                    self.model, batch, self.modality, self.attack, objective, self.device, batch_size
                )
                for key, value in (budget(batch[self.modality], adv) | {"index": rows}).items():
                    self.spent.setdefault(key, []).append(value)
                yield batch | {self.modality: adv}


def attack_split(
    backend: ModuleType, model, data: SampleSet, cfg: Config, device, modality: str, attack: dict, classes: int
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
        reference = {"labels": chosen}
        goal = {"target_class": chosen} if targeted else {}
    else:
        clean = backend.predict(model, data, cfg, device)["embedding"]  # (N, E)
        partner = impostors(data.labels("subject"), attack.get("seed", 0)) if targeted else np.arange(len(labels))
        reference = {"references": clean[partner]}
    attacked = Attacked(backend, model, data, device, modality, attack, reference)
    preds = backend.predict(model, attacked, cfg, device)
    return preds, per_sample({k: np.concatenate(v) for k, v in attacked.spent.items()}) | goal


def per_sample(spent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The budget rows of the attacked batches (batch order, one per copy: a video face at data.face_frames
    frames is k copies with one `index`) -> one row per sample in sample order, as the predictions: the largest
    L-inf and the lowest SNR over the sample's copies."""
    index = spent.pop("index")
    order = np.argsort(index, kind="stable")
    starts = first_copies(index[order])
    return {
        "linf": np.maximum.reduceat(spent["linf"][order], starts),
        "snr_db": np.minimum.reduceat(spent["snr_db"][order], starts),
    }
