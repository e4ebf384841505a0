"""Pareto-front math for privacy/utility sweeps: small pure functions over plain arrays.

Convention: every function takes ``values`` of shape (n_points, n_objectives) and ``directions``
("min"/"max" per objective); internally everything is turned into minimisation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Directions = Sequence[str]


def _check(values: np.ndarray, directions: Directions) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (points x objectives), got shape {values.shape}")
    if values.shape[1] != len(directions):
        raise ValueError(f"{values.shape[1]} objectives but {len(directions)} directions")
    bad = [d for d in directions if d not in ("min", "max")]
    if bad:
        raise ValueError(f"directions must be 'min' or 'max', got {bad}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite (failed trials have no place on a front)")
    return values


def to_minimization(values, directions: Directions) -> np.ndarray:
    """Flip the sign of maximised objectives so that smaller is better everywhere."""
    values = _check(values, directions)
    signs = np.array([1.0 if d == "min" else -1.0 for d in directions])
    return values * signs


def pareto_mask(values, directions: Directions) -> np.ndarray:
    """True for the non-dominated points. A point is dominated when another is no worse in every
    objective and strictly better in at least one; identical points are all kept."""
    loss = to_minimization(values, directions)
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = np.all(loss <= loss[i], axis=1)
        better = np.any(loss < loss[i], axis=1)
        mask[i] = not np.any(no_worse & better)
    return mask


def hypervolume(values, directions: Directions, reference) -> float:
    """Volume dominated by ``values`` and bounded by ``reference`` (same units and directions as the
    values). Points that do not dominate the reference in every objective contribute nothing."""
    loss = to_minimization(values, directions)
    ref = to_minimization(np.asarray(reference, dtype=float)[None, :], directions)[0]
    inside = loss[np.all(loss < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    # moocore's exact hypervolume (minimisation, strict reference); tests/search/test_pareto.py pins it on
    # hand-computed fronts.
    import moocore

    return float(moocore.hypervolume(inside, ref=ref))


def normalized_hypervolume(values, directions: Directions, reference, ideal) -> float:
    """Hypervolume divided by the volume of the box between ``ideal`` and ``reference``: the
    fraction of that box the front dominates, in [0, 1]."""
    ref, ideal = np.asarray(reference, dtype=float), np.asarray(ideal, dtype=float)
    box = np.abs(ref - ideal)
    if np.any(box == 0):
        raise ValueError(f"ideal {ideal.tolist()} and reference {ref.tolist()} must differ in every objective")
    clipped = np.asarray(values, dtype=float)
    # Points beyond the ideal (e.g. a utility above 100%) are clipped so the ratio stays <= 1.
    lo, hi = np.minimum(ref, ideal), np.maximum(ref, ideal)
    if len(clipped):
        clipped = np.clip(clipped, lo, hi)
    return hypervolume(clipped, directions, ref) / float(np.prod(box)) if len(clipped) else 0.0
