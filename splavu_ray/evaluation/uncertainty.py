"""Intervals and chance references of the tasks' headline numbers (eval.bootstrap).

Each task hands over, per headline key (the ``key`` of its table column), the per-seed point values of both
views and the weighted statistic that recomputes them on a resample of its test units
(splavu_ray.metrics.bootstrap). :func:`intervals` draws the resamples once per task (``eval.bootstrap.seed``),
scores raw and anonymized of every seed on the same ones and writes, per key, into the task's section::

    "intervals": {KEY: {"raw": [lo, hi], "anonymized": [lo, hi], "drop": raw - anonymized,
                        "drop_interval": [lo, hi], "drop_excludes_zero": bool,
                        "unit": "test video", "n": 42, "seeds": [0],
                        "per_seed": {"raw": [...], "anonymized": [...]}}}   # per_seed with 2+ seeds only

Chance references go next to them: ``"chance_reference": {KEY: {NAME: value}}``,
and ``KEY_chance`` keeps the first one (what the table and the plots have always read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config import Config
from ..metrics.bootstrap import bootstrap, paired_summary


def training_seeds(cfg: Config) -> list[int]:
    """The seeds every trained attacker / detector / head runs with: seed, seed + 1, ... (eval.bootstrap.seeds)."""
    return [cfg.seed + k for k in range(cfg.eval.bootstrap.seeds)]


def probe_seeds(cfg: Config) -> list[int]:
    """The action probe's seeds: :func:`training_seeds` for the sgd probe; the logreg probe is solved to
    convergence (no seed changes it), so one."""
    return training_seeds(cfg) if cfg.eval.action.probe == "sgd" else [cfg.seed]


def seeded(cfg: Config, seed: int) -> Config:
    """``cfg`` with another top-level seed (the one probes and heads take)."""
    return cfg if seed == cfg.seed else cfg.model_copy(update={"seed": seed})


@dataclass
class Headline:
    """One headline key: per view, the per-seed full-sample values and weighted statistics."""

    points: dict[str, list[float]] = field(default_factory=lambda: {"raw": [], "anonymized": []})
    stats: dict[str, list[Callable[[np.ndarray], np.ndarray]]] = field(
        default_factory=lambda: {"raw": [], "anonymized": []})

    def add(self, tag: str, point: float, stat: Callable[[np.ndarray], np.ndarray]) -> None:
        self.points[tag].append(float(point))
        self.stats[tag].append(stat)

    def point(self, tag: str) -> float:
        """The headline value: the mean over seeds (the single value with one seed)."""
        return float(np.mean(self.points[tag]))


def intervals(cfg: Config, n: int, unit: str, headlines: dict[str, Headline], seeds: list[int]) -> dict:
    """The "intervals" block of a section ({} with eval.bootstrap.resamples=0)."""
    b = cfg.eval.bootstrap
    if not b.resamples or not headlines:
        return {}
    stats = {(key, tag, s): fn for key, h in headlines.items() for tag in ("raw", "anonymized")
             for s, fn in enumerate(h.stats[tag])}
    values = bootstrap(n, stats, b.resamples, b.seed)
    out = {}
    for key, h in headlines.items():
        k = len(h.stats["raw"])
        entry = paired_summary([values[(key, "raw", s)] for s in range(k)],
                               [values[(key, "anonymized", s)] for s in range(k)],
                               h.point("raw"), h.point("anonymized"), b.confidence)
        entry.update(unit=unit, n=int(n), seeds=list(seeds[:k]))
        if k > 1:
            entry["per_seed"] = {tag: list(h.points[tag]) for tag in ("raw", "anonymized")}
        out[key] = entry
    return out


def settings(cfg: Config) -> dict:
    """results.json "bootstrap": how every interval was drawn."""
    b = cfg.eval.bootstrap
    return {"method": "percentile bootstrap over test units, paired raw vs anonymized", "resamples": b.resamples,
            "confidence": b.confidence, "seed": b.seed, "training_seeds": training_seeds(cfg)}
