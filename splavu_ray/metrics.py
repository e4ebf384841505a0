"""Metrics (scikit-learn): privacy cMAP / macro-F1, chance level, action top-1.

All values are returned in percent.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score


def _valid_columns(targets: np.ndarray) -> np.ndarray:
    # AP is undefined for an attribute with no positive (or no negative) example in the split.
    pos = targets.sum(axis=0)
    return np.flatnonzero((pos > 0) & (pos < targets.shape[0]))


def per_attribute_ap(scores: np.ndarray, targets: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    return {names[j]: 100.0 * float(average_precision_score(targets[:, j], scores[:, j]))
            for j in _valid_columns(targets)}


def cmap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Class-wise mean average precision over attributes that have both labels in the split."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    cols = _valid_columns(targets)
    if cols.size == 0:
        raise ValueError("cMAP needs at least one attribute with positive and negative examples")
    return 100.0 * float(average_precision_score(targets[:, cols], scores[:, cols], average="macro"))


def chance_cmap(targets: np.ndarray) -> float:
    """cMAP of a constant predictor (equals the mean prevalence): the attacker's floor."""
    targets = np.asarray(targets)
    return cmap(np.zeros(targets.shape), targets)


def macro_f1(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    targets = np.asarray(targets)
    cols = _valid_columns(targets)
    pred = (np.asarray(probs)[:, cols] >= threshold).astype(int)
    return 100.0 * float(f1_score(targets[:, cols], pred, average="macro", zero_division=0))


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(accuracy_score(np.asarray(labels), np.asarray(scores).argmax(axis=1)))


def relative_change(raw: float, new: float) -> float:
    """(new - raw) / raw in percent; the paper's 'down 35.5%'."""
    return 100.0 * (new - raw) / raw if raw else float("nan")


def leakage_drop(raw: float, new: float, chance: float) -> float:
    """Relative fall of the leakage above chance, in percent (positive = less leakage)."""
    above = raw - chance
    return 100.0 * (raw - new) / above if above > 0 else float("nan")
