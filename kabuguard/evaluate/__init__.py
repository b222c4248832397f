"""Evaluation: how well a run's decisions and alerts did against labelled ground truth."""

from kabuguard.evaluate.evaluation import evaluate_run, summary_lines

__all__ = ["evaluate_run", "summary_lines"]
