"""Metrics (scikit-learn): privacy cMAP / macro-F1, chance level, action top-1, per-group accuracy
and its gap, top-1 identity retrieval.

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


def random_average_precision(labels: np.ndarray) -> float:
    """Expected AP (percent) of uniformly random scores (a random ranking) on these binary labels, exact.

    With n items of which P are positive, AP = (1/P) sum over positives of the precision at their rank;
    averaging over all rankings gives (P - 1) / (n - 1) + H_n (n - P) / (n (n - 1)), H_n the n-th harmonic
    number (P / n = prevalence when P = n, H_n / n when P = 1). It lies above the prevalence, the AP of a
    constant score, and tends to it as n grows."""
    labels = np.asarray(labels)
    n, pos = labels.size, int(labels.sum())
    if pos == 0 or pos == n:
        raise ValueError("random AP needs both positive and negative examples")
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    return 100.0 * ((pos - 1) / (n - 1) + harmonic * (n - pos) / (n * (n - 1)))


def random_cmap(targets: np.ndarray) -> float:
    """Expected cMAP (percent) of random scores: the mean exact random AP over the scorable attributes."""
    targets = np.asarray(targets)
    cols = _valid_columns(targets)
    if cols.size == 0:
        raise ValueError("cMAP needs at least one attribute with positive and negative examples")
    return float(np.mean([random_average_precision(targets[:, j]) for j in cols]))


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


def per_group_accuracy(scores: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Top-1 per group (e.g. gender-presentation group), in percent; groups in sorted order."""
    pred, labels, groups = np.asarray(scores).argmax(axis=1), np.asarray(labels), np.asarray(groups)
    return {str(g): 100.0 * float(accuracy_score(labels[groups == g], pred[groups == g])) for g in sorted(set(groups))}


def accuracy_gap(per_group: dict[str, float]) -> float:
    """Largest minus smallest per-group accuracy (points): 0 is fair."""
    if len(per_group) < 2:
        raise ValueError(f"an accuracy gap needs at least two groups, got {sorted(per_group)}")
    return max(per_group.values()) - min(per_group.values())


def retrieval_top1(gallery: np.ndarray, gallery_ids: Sequence[str], probe: np.ndarray, probe_ids: Sequence[str]) -> float:
    """Top-1 identity retrieval with no training: each probe takes the identity of its nearest
    gallery item by cosine distance (a 1-nearest-neighbour classifier), in percent."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute")
    knn.fit(np.asarray(gallery, dtype=np.float64), np.asarray(gallery_ids))
    return 100.0 * float(accuracy_score(np.asarray(probe_ids), knn.predict(np.asarray(probe, dtype=np.float64))))


def retrieval_hits(gallery: np.ndarray, gallery_ids: Sequence[str], probe: np.ndarray,
                   probe_ids: Sequence[str]) -> np.ndarray:
    """Per probe, whether its cosine-nearest gallery item has its identity: (P,) bool (its mean is
    :func:`retrieval_top1`)."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute")
    knn.fit(np.asarray(gallery, dtype=np.float64), np.asarray(gallery_ids))
    return knn.predict(np.asarray(probe, dtype=np.float64)) == np.asarray(probe_ids)


def majority_top1(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Top-1 (percent) of always answering the most frequent training class."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return 100.0 * float(np.mean(np.asarray(test_labels) == values[counts.argmax()]))


def retrieval_chance(gallery_ids: Sequence[str], probe_ids: Sequence[str]) -> float:
    """Expected top-1 of a random gallery pick: sum over probes of P(same identity), in percent."""
    ids, counts = np.unique(np.asarray(gallery_ids), return_counts=True)
    share = dict(zip(ids.tolist(), (counts / counts.sum()).tolist()))
    return 100.0 * float(np.mean([share.get(p, 0.0) for p in np.asarray(probe_ids).tolist()]))
