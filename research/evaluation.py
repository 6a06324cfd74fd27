"""Evaluate one split's predictions with every protocol, and write the results next to the run.

`evaluate` takes per-sample arrays (what the trainer collects over a split) and runs: closed-set
classification with per-subject voting, the fairness breakdown, open-set verification (when the training
subjects are given), cross-modal matching (when face and voice embeddings are given) and the dataset
report. It writes into out_dir:

    metrics.json    {"metrics": the returned scalars, "dataset": ..., "closed_set": ..., "verification": ...}
    trials.csv      the verification trial list with its scores (i, j, subject_i, subject_j, target, score)
    *.png           confusion.png, fairness_acc.png, roc_det.png, scores.png, fairness_eer.png, embedding.png

Definitions of every metric: docs/evaluation.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from research import plots as figs
from research.config import MODALITIES, EvalConfig
from research.metrics import classification, crossmodal, fairness, verification

ATTRIBUTES = ("gender", "age", "group")  # subgroup attributes of the fairness breakdown


def evaluate(
    preds: dict[str, np.ndarray],
    classes: dict[str, list[str]],
    out_dir: str | Path,
    *,
    train_subjects: np.ndarray | None = None,
    cohort: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    plots: bool = True,
    target: str | None = None,
    n_trials: int = EvalConfig.trials,
    top_k: int = EvalConfig.as_norm_top_k,
    min_group: int = 5,
    official: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    threshold: float | None = None,
) -> dict[str, float]:
    """Run every protocol that the arrays in `preds` allow; return flat scalar metrics.

    preds: "log_probs" (N, C), "target" (N,) (-1 = class unseen in training), "embedding" (N, E),
    "subject" (N,), attributes "gender", "age", "group" (N,), "{m}_present" (N,) bool, optionally
    "face_embedding" and "voice_embedding" (N, E). classes: attribute -> class names; `target` names the
    attribute that preds["target"] copies (class names of the confusion matrix). train_subjects switches
    on open-set verification (refused if a subject overlaps); cohort = (embeddings, subjects) of training
    identities for AS-norm (top_k cohort scores per side). Subgroups smaller than min_group samples are
    left out of the fairness figures. official: name -> (i, j, target) official trial lists (e.g. VoxCeleb1-O)
    scored exactly as listed, reported as `{name}/eer` etc. Attributes of the manifest beyond gender, age
    and group take part in the fairness breakdown; an attribute unknown (-1) for some sample does not.
    Open-set verification also reports `pair_acc`, the trials' accuracy at `threshold` (the score from which
    a trial is accepted), and that threshold; None = the threshold of highest accuracy on these trials (pass
    the validation split's to the test split). Closed-set metrics need "log_probs" (a model with a classifier).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted(set(classes) - {*ATTRIBUTES, "identity", "subject"})
    attrs = [a for a in (*ATTRIBUTES, *extra) if a in preds and (np.asarray(preds[a]) >= 0).all()]
    groups = fairness.subgroups({a: preds[a] for a in attrs}, {a: classes[a] for a in attrs})
    present = {m: preds[f"{m}_present"] for m in MODALITIES if f"{m}_present" in preds}
    details = {}
    if attrs or present:
        details["dataset"] = fairness.dataset_report({a: preds[a] for a in attrs}, present, classes)
    scalars: dict[str, float] = {}
    closed = np.asarray(preds["target"]) >= 0
    if closed.any() and "log_probs" in preds:
        found, details["closed_set"] = _closed_set(preds, closed, groups, target, min_group)
        scalars |= found
    trials = None
    if train_subjects is not None:
        found, details["verification"], trials = _open_set(
            preds, groups, train_subjects, cohort, n_trials, top_k, seed, min_group
        )
        scalars |= found | _pair_accuracy(trials, threshold)
        _write_trials(out / "trials.csv", preds["subject"], trials)
    scalars |= _official(preds, official or {}, train_subjects)
    if "face_embedding" in preds and "voice_embedding" in preds:
        scalars |= _cross_modal(preds, seed, n_trials)
    if plots:
        _write_figures(preds, classes, details, trials, attrs, target, out, seed)
    record = {"metrics": scalars, **details}
    (out / "metrics.json").write_text(json.dumps(record, indent=1, default=lambda a: a.tolist()))
    return scalars


def _official(preds: dict, official: dict, train_subjects: np.ndarray | None) -> dict[str, float]:
    """The official trial lists scored exactly as listed: `{name}/eer` etc."""
    scalars = {}
    for name, listed in official.items():
        subjects = np.array([]) if train_subjects is None else train_subjects
        found, _ = verification.verify(preds["embedding"], preds["subject"], subjects, trials=listed)
        scalars |= {f"{name}/{k}": v for k, v in found.items()}
    return scalars


def _closed_set(
    preds: dict[str, np.ndarray], closed: np.ndarray, groups: dict, target: str | None, min_group: int
) -> tuple[dict[str, float], dict]:
    """Sample-level and subject-level (summed probabilities) metrics over the samples of seen classes."""
    log_probs, labels = preds["log_probs"][closed], preds["target"][closed]  # (n, C), (n,)
    if target is not None and np.any(preds[target][closed] != labels):
        raise ValueError(f"preds['target'] is not the '{target}' label")
    scalars = classification.classification_metrics(log_probs, labels)
    _, subject_pred, subject_label = classification.per_subject(log_probs, labels, preds["subject"][closed])
    by_subject = classification.classification_metrics(subject_pred, subject_label)
    scalars |= {f"subject_{k}": v for k, v in by_subject.items()}

    pred = classification.predictions(preds["log_probs"])  # (N,)
    closed_groups = {a: {g: m & closed for g, m in masks.items()} for a, masks in groups.items()}
    table = fairness.breakdown(
        closed_groups, lambda m: classification.classification_metrics(pred[m], preds["target"][m]), min_group
    )
    n_classes = log_probs.shape[1]
    details = {
        "per_class_acc": classification.per_class_accuracy(log_probs, labels, n_classes),
        "confusion": classification.confusion_matrix(log_probs, labels, n_classes),
        "fairness": table,
        "bias": fairness.bias(table),
    }
    return scalars | _fair_scalars(table, details["bias"]), details


def _open_set(
    preds: dict[str, np.ndarray],
    groups: dict,
    train_subjects: np.ndarray,
    cohort: tuple[np.ndarray, np.ndarray] | None,
    n_trials: int,
    top_k: int,
    seed: int,
    min_group: int,
) -> tuple[dict[str, float], dict, dict[str, np.ndarray]]:
    """Verification over all trials, then per subgroup over the trials whose two samples are in it."""
    emb, subjects = preds["embedding"], preds["subject"]
    scalars, trials = verification.verify(emb, subjects, train_subjects, n_trials, seed, cohort, top_k)
    i, j, is_target, scores = trials["i"], trials["j"], trials["target"], trials["score"]

    def within(mask: np.ndarray) -> dict[str, float]:
        keep = mask[i] & mask[j]
        if is_target[keep].all() or not is_target[keep].any():
            return {}  # undefined without both kinds of trial
        return verification.verification_metrics(scores[keep], is_target[keep])

    table = fairness.breakdown(groups, within, min_group)
    details = {"fairness": table, "bias": fairness.bias(table), "as_norm": cohort is not None}
    return scalars | _fair_scalars(table, details["bias"]), details, trials


def _pair_accuracy(trials: dict[str, np.ndarray], threshold: float | None) -> dict[str, float]:
    """Pair accuracy of the trials at `threshold`, or at these trials' own best threshold when None."""
    scores, is_target = trials["score"], trials["target"]
    if threshold is None:
        threshold = verification.accuracy_threshold(scores, is_target)
    return {"pair_acc": verification.pair_accuracy(scores, is_target, threshold), "threshold": threshold}


def _cross_modal(preds: dict[str, np.ndarray], seed: int, n_trials: int) -> dict[str, float]:
    """1:2 matching, retrieval both ways and face-voice verification (crossmodal/eer ...), on the samples that
    have both a face and a voice (none when no sample has both, e.g. in the test-time ablation of face or voice)."""
    n = len(preds["subject"])
    both = preds.get("face_present", np.ones(n, bool)) & preds.get("voice_present", np.ones(n, bool))
    if not both.any():
        return {}
    face, voice, subjects = preds["face_embedding"][both], preds["voice_embedding"][both], preds["subject"][both]
    scalars = {f"match/{k}": v for k, v in crossmodal.matching_1to2(face, voice, subjects, seed=seed).items()}
    scalars |= {f"retrieval/v2f/{k}": v for k, v in crossmodal.retrieval(voice, face, subjects, subjects).items()}
    scalars |= {f"retrieval/f2v/{k}": v for k, v in crossmodal.retrieval(face, voice, subjects, subjects).items()}
    scalars |= {f"crossmodal/{k}": v for k, v in crossmodal.verification(face, voice, subjects, n_trials, seed).items()}
    return scalars


def _fair_scalars(table: fairness.Table, bias: dict) -> dict[str, float]:
    """Flat names: fair/{attribute}/{metric}/{subgroup}, fair/{attribute}/{metric}/gap and .../std."""
    scalars = {}
    for attr, rows in table.items():
        for group, row in rows.items():
            scalars |= {f"fair/{attr}/{k}/{group}": v for k, v in row.items() if k != "n"}
    for attr, metrics in bias.items():
        for k, figures in metrics.items():
            scalars |= {f"fair/{attr}/{k}/{name}": v for name, v in figures.items()}
    return scalars


def _write_trials(path: Path, subjects: np.ndarray, trials: dict[str, np.ndarray]) -> None:
    i, j = trials["i"], trials["j"]
    columns = np.stack([i, j, subjects[i], subjects[j], trials["target"]], axis=1).astype(np.int64)
    with path.open("w") as f:
        f.write("i,j,subject_i,subject_j,target,score\n")
        for row, score in zip(columns, trials["score"], strict=True):
            f.write(",".join(map(str, row)) + f",{score:.6f}\n")


def _write_figures(
    preds: dict[str, np.ndarray],
    classes: dict[str, list[str]],
    details: dict,
    trials: dict[str, np.ndarray] | None,
    attrs: list[str],
    target: str | None,
    out: Path,
    seed: int,
) -> None:
    if "closed_set" in details:
        confusion = details["closed_set"]["confusion"]
        names = classes[target] if target else [str(c) for c in range(len(confusion))]
        figs.confusion(confusion, names, out / "confusion.png")
        figs.subgroup_bars(details["closed_set"]["fairness"], "acc", out / "fairness_acc.png")
    if trials is not None:
        figs.roc_det(trials["score"], trials["target"], out / "roc_det.png")
        figs.score_histograms(trials["score"], trials["target"], out / "scores.png")
        figs.subgroup_bars(details["verification"]["fairness"], "eer", out / "fairness_eer.png")
    colour_by = {"subject": preds["subject"], **{a: preds[a] for a in attrs}}
    figs.embedding_map(preds["embedding"], colour_by, out / "embedding.png", names=classes, seed=seed)
