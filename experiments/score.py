"""Score a trial list against stored embeddings: cosine, optional mean subtraction, AS-norm / S-norm, calibration.

    python experiments/score.py --embeddings EMB.safetensors --trials veri_test2.txt
        [--mean TRAIN.safetensors] [--cohort COHORT.safetensors --norm as-norm|s-norm --top-k 100]
        [--calibrate DEV.scores --prior 0.5] [--on-missing error|skip] [--out FILE] [--json FILE]

Writes `enroll test score [target|nontarget]` per trial to --out (default: beside the trials, SUFFIX -> .scores)
and, with labels, prints EER and minDCF at p_target 0.01 and 0.05 (fractions). --calibrate fits llr = a s + b
on a labelled development score file (this command's output on a dev list), writes the calibrated llrs to
--llr-out (default: --out with suffix .llr) and prints Cllr and min Cllr before and after. A trial naming a
key that is not in the embeddings is an error (exit 2) unless --on-missing skip. Definitions: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from research import scoring  # noqa: E402
from research.metrics import verification  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", required=True, type=Path, help="safetensors: one (D,) tensor per key")
    parser.add_argument("--trials", required=True, type=Path, help="'label enroll test' or 'enroll test [label]'")
    parser.add_argument("--out", type=Path, help="score file (default: the trials' path with suffix .scores)")
    parser.add_argument("--mean", type=Path, help="embeddings whose mean is subtracted before the cosine")
    parser.add_argument("--cohort", type=Path, help="cohort embeddings for score normalisation")
    parser.add_argument("--norm", choices=("as-norm", "s-norm"), default="as-norm")
    parser.add_argument("--top-k", type=int, default=100, help="AS-norm cohort size per side (WeSpeaker: 100)")
    parser.add_argument("--on-missing", choices=("error", "skip"), default="error")
    parser.add_argument("--calibrate", type=Path, help="labelled dev score file to fit llr = a * score + b on")
    parser.add_argument("--prior", type=float, default=0.5, help="target prior of the calibration objective")
    parser.add_argument("--llr-out", type=Path, help="calibrated llr file (default: --out with suffix .llr)")
    parser.add_argument("--json", type=Path, help="write trials, skipped, eer, min_dcf_0.01, min_dcf_0.05 here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        record = run(args)
    except ValueError as error:  # ScoringError (a file and line) or a bad option value (e.g. --top-k 1)
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


def run(args: argparse.Namespace) -> dict:
    """Score, write, report; returns the record of --json."""
    trials = scoring.read_trials(args.trials)
    embeddings = scoring.read_embeddings(args.embeddings)
    mean = None if args.mean is None else np.mean(list(scoring.read_embeddings(args.mean).values()), axis=0)
    cohort = None if args.cohort is None else np.stack(list(scoring.read_embeddings(args.cohort).values()))
    scores, keep = scoring.score_trials(
        embeddings, trials, mean=mean, cohort=cohort, norm=args.norm, top_k=args.top_k, on_missing=args.on_missing
    )
    out = args.out or args.trials.with_suffix(".scores")
    scoring.write_scores(out, trials, keep, scores)
    record = {"trials": int(keep.sum()), "skipped": int((~keep).sum())}
    print(f"{record['trials']} trials scored, {record['skipped']} skipped -> {out}")
    labels = None if trials.labels is None else trials.labels[keep]
    if labels is not None and (labels.all() or not labels.any()):
        raise scoring.ScoringError(f"{args.trials}: the scored trials need both target and non-target trials")
    record |= metrics(scores, labels)
    if args.calibrate:
        record |= calibrate(args, trials, keep, scores, labels, out)
    return record


def metrics(scores: np.ndarray, labels: np.ndarray | None) -> dict:
    """EER and minDCF (fractions), printed; None without labels."""
    if labels is None:
        print("no labels in the trial list: scores only")
        return {"eer": None, "min_dcf_0.01": None, "min_dcf_0.05": None}
    found = {
        "eer": verification.eer(scores, labels)[0],
        "min_dcf_0.01": verification.min_dcf(scores, labels, 0.01),
        "min_dcf_0.05": verification.min_dcf(scores, labels, 0.05),
    }
    print("  ".join(f"{k} {v:.4f}" for k, v in found.items()))
    return found


def calibrate(args, trials, keep, scores, labels, out: Path) -> dict:
    """Fit on the dev score file, apply, write the llrs, report Cllr / min Cllr before and after."""
    dev_scores, dev_labels = scoring.read_scores(args.calibrate)
    if dev_labels.all() or not dev_labels.any():
        raise scoring.ScoringError(f"{args.calibrate}: calibration needs both target and non-target trials")
    a, b = scoring.fit_calibration(dev_scores, dev_labels, prior=args.prior)
    llr = a * scores + b
    llr_out = args.llr_out or out.with_suffix(".llr")
    scoring.write_scores(llr_out, trials, keep, llr)
    fit = f"llr = {a:.6g} * score {'+-'[b < 0]} {abs(b):.6g}"
    print(f"calibration on {args.calibrate} (prior {args.prior}): {fit} -> {llr_out}")
    record = {"calibration": {"a": a, "b": b, "prior": args.prior}}
    if labels is None:
        return record
    record |= {
        "cllr": scoring.cllr(scores, labels),
        "min_cllr": scoring.min_cllr(scores, labels),
        "cllr_calibrated": scoring.cllr(llr, labels),
        "min_cllr_calibrated": scoring.min_cllr(llr, labels),
    }
    print(f"Cllr {record['cllr']:.4f} -> {record['cllr_calibrated']:.4f}  (bits; before: the scores read as llrs)")
    print(f"min Cllr {record['min_cllr']:.4f} -> {record['min_cllr_calibrated']:.4f}")
    return record


if __name__ == "__main__":
    sys.exit(main())
