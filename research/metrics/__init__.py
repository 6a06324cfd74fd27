"""Evaluation metrics on NumPy arrays (no framework): classification, verification, crossmodal, fairness.

Import the module you need (`from research.metrics import verification`); research/evaluation.py runs
them all on one split's predictions. Definitions: docs/evaluation.md.
"""
