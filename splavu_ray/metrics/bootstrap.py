"""Percentile bootstrap over test units (videos or images), vectorised with resample COUNTS.

A bootstrap resample draws n test units with replacement. Instead of copying the data B times, each
resample is a row of counts (how often each unit was drawn), and every statistic here is written as a
weighted statistic of the original arrays: a (B, n) count matrix gives B values in one numpy pass. Units
drawn k times weigh k, which is exactly what duplicating them would give.

The same count matrix scores both views (raw and anonymized), so the drop raw - anonymized of one resample
compares the two on the same test units: a paired bootstrap. Statistics whose model was trained with
several seeds are bootstrapped within each seed on the same counts and the resamples pooled
(:func:`paired_summary`), so the interval holds both sources of spread.

All statistics are in percent, like splavu_ray.metrics.classification. A resample where a statistic is
undefined (e.g. an attribute with no positive drawn) gives NaN there; intervals ignore NaN resamples.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator, Mapping

import numpy as np

# Cells (resamples x units) per chunk of the count matrix: bounds the memory of every statistic.
MAX_CELLS = 2_000_000

Stat = Callable[[np.ndarray], np.ndarray]  # counts (b, n) -> (b,) values


def count_chunks(n: int, resamples: int, seed: int, max_cells: int = MAX_CELLS) -> Iterator[np.ndarray]:
    """Resample counts in chunks of rows: each row holds how often each of the n units was drawn in one
    resample of size n (uniform, with replacement). The rows depend on ``seed`` only, not on the chunking."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one test unit")
    rng = np.random.default_rng(seed)
    step = max(1, max_cells // n)
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + n * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def bootstrap(n: int, stats: Mapping[str, Stat], resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Every statistic on the SAME resamples: {name: (resamples,) values}."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in stats}
    for counts in count_chunks(n, resamples, seed):
        for k, fn in stats.items():
            out[k].append(np.asarray(fn(counts), np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    """[lo, hi]: the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the finite values."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return [float("nan"), float("nan")]
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def paired_summary(raw: list[np.ndarray], anonymized: list[np.ndarray], point_raw: float, point_anonymized: float,
                   confidence: float) -> dict:
    """Intervals of raw, anonymized and their drop (raw - anonymized) from per-seed bootstrap values.

    ``raw[s]`` and ``anonymized[s]``: seed s's values on the same resamples (paired); the seeds' resamples
    are pooled. The drop's interval comes from the per-resample differences, so it accounts for the two
    views being scored on the same units. ``drop_excludes_zero``: the drop's interval lies entirely on one
    side of 0, i.e. raw and anonymized differ beyond the resampling (and seed) noise."""
    r, a = np.concatenate(raw), np.concatenate(anonymized)
    drop_ci = percentile_interval(r - a, confidence)
    return {"raw": percentile_interval(r, confidence), "anonymized": percentile_interval(a, confidence),
            "drop": float(point_raw - point_anonymized), "drop_interval": drop_ci,
            "drop_excludes_zero": bool(drop_ci[0] > 0 or drop_ci[1] < 0)}


# ------------------------------------------------------------------------------------------------
# Weighted statistics: counts (b, n) -> (b,)
# ------------------------------------------------------------------------------------------------


def weighted_accuracy(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Top-1 (percent) of each resample from per-unit hits (n,)."""
    return 100.0 * (counts @ np.asarray(correct, np.float64)) / counts.sum(axis=1)


def weighted_group_gap(correct: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Largest minus smallest per-group accuracy (points) of each resample; NaN where fewer than two
    groups were drawn."""
    correct, groups = np.asarray(correct, np.float64), np.asarray(groups)
    accs = []
    for g in sorted(set(groups.tolist())):
        m = groups == g
        w = counts[:, m].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accs.append(np.where(w > 0, 100.0 * (counts[:, m] @ correct[m]) / w, np.nan))
    acc = np.stack(accs, axis=1)
    drawn = np.isfinite(acc).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with no group drawn: NaN, masked below
        gap = np.nanmax(acc, axis=1) - np.nanmin(acc, axis=1)
    return np.where(drawn >= 2, gap, np.nan)


def weighted_average_precision(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """scikit-learn's average precision (sum over score thresholds of recall gain x precision, ties
    grouped) of each resample, as a fraction; NaN where a resample drew no positive or no negative."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order] > 0
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each group of tied scores
    w = counts[:, order]
    drawn = np.cumsum(w, axis=1)[:, ends]  # units ranked at or above each threshold
    w[:, ~y] = 0.0
    tp = np.cumsum(w, axis=1)[:, ends]
    pos, total = tp[:, -1], drawn[:, -1]
    gain = np.diff(tp, axis=1, prepend=0.0)  # positives gained at each threshold (zero where none drawn)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (gain * (tp / np.maximum(drawn, 1.0))).sum(axis=1) / pos
    return np.where((pos > 0) & (pos < total), ap, np.nan)


def weighted_cmap(scores: np.ndarray, targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """cMAP (percent) of each resample: the mean AP over the attributes that have both labels in it."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    aps = np.stack([weighted_average_precision(scores[:, j], targets[:, j], counts)
                    for j in range(targets.shape[1])], axis=1)
    valid = np.isfinite(aps)
    total = np.where(valid, aps, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid.any(axis=1), 100.0 * total / valid.sum(axis=1), np.nan)


def in_row_blocks(fn: Callable[[np.ndarray], np.ndarray], counts: np.ndarray, width: int,
                  max_cells: int = MAX_CELLS) -> np.ndarray:
    """``fn`` on blocks of rows of ``counts`` such that rows x ``width`` (the statistic's working width,
    e.g. its number of elements) stays within ``max_cells``: the memory of a statistic whose elements
    outnumber the test units."""
    step = max(1, max_cells // max(1, width))
    return np.concatenate([fn(counts[i:i + step]) for i in range(0, len(counts), step)])


def weighted_auc(scores: np.ndarray, labels: np.ndarray, unit: np.ndarray, weight: np.ndarray,
                 counts: np.ndarray) -> np.ndarray:
    """ROC AUC (percent) of each resample over weighted elements: element i belongs to test unit
    ``unit[i]`` and stands for ``weight[i]`` items (e.g. the frames of one window with one label), so a
    resample weighs it ``counts[:, unit[i]] * weight[i]``. Ties count one half (as roc_auc_score)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    unit, weight = np.asarray(unit)[order], np.asarray(weight, np.float64)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]  # first index of each group of tied scores
    return in_row_blocks(lambda c: _sorted_auc(y, unit, weight, starts, c), counts, len(s))


def _sorted_auc(y, unit, weight, starts, counts):
    w = counts[:, unit] * weight
    wn = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    wp = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each group
    pos, neg = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (wp * (below + 0.5 * wn)).sum(axis=1) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), 100.0 * auc, np.nan)
