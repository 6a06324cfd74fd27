"""Evaluation metrics on NumPy arrays (no framework): classification, verification, crossmodal, fairness.

Import the module you need (`from research.metrics import verification`); research/evaluation.py runs
them all on one split's predictions. Definitions: docs/evaluation.md.
"""

# Metric names that contain one of these are better when lower (`test/eer`, `val/loss`, `wall_time_s`):
# the one list that model selection (research/training.py) and the tables (research/tables.py) use.
LOWER_IS_BETTER = ("eer", "loss", "dcf", "error", "wall_time", "params", "flops", "gap", "std")


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)
