"""Scoring on a selection split: what sweeps and recipe searches read instead of test.

A number that chooses something (a loss weight, a recipe, a checkpoint) must not come from the split a
run reports. With ``eval.score_on: val`` every task is scored on data drawn from train and val only:

- action and re-id score the validation split (``data.val_split``) instead of the test split;
- privacy, TAD and anomaly have only a train and a test split, so their train split is cut in two by a
  stable hash of each row's uri: ``1 - eval.selection_holdout`` of it trains the attacker / detector and
  the rest scores it (``<split>@fit`` and ``<split>@holdout``);
- bias is not scored: its balanced test split has no counterpart among the biased training splits.

``eval.score_on: test`` (the default of ``train`` and ``evaluate``) is the reported protocol; sweeps set
``val`` for every trial. results.json records which one a run used (``scored_on``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore

FIT, HOLDOUT = "@fit", "@holdout"
NOT_SCORED_ON_VAL = {"bias": "its balanced test split has no counterpart among the (biased) training splits; "
                              "bias is not scored with eval.score_on=val"}
NOT_SCORED_ON_VAL.update({  # their scored split is the test subjects (Toyota Smarthome CS, CASIA-B 075-124)
    "toyota_bias": "it scores the cross-subject test subjects; not scored with eval.score_on=val",
    "gait": "it scores CASIA-B's unseen test subjects; not scored with eval.score_on=val",
})


def in_holdout(uri: str, fraction: float) -> bool:
    """Whether a row belongs to the held-out part: a stable hash of its uri, independent of row order."""
    digest = hashlib.sha256(uri.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_rows(split: FeatureSplit, fraction: float) -> tuple[FeatureSplit, FeatureSplit]:
    """(fit, holdout) parts of one loaded split."""
    keep = [in_holdout(str(r.get("uri") or r.get("video_id")), fraction) for r in split.rows]

    def part(flag: bool) -> FeatureSplit:
        idx = [i for i, k in enumerate(keep) if k == flag]
        return replace(split, rows=[split.rows[i] for i in idx], clips=[split.clips[i] for i in idx],
                       static=[split.static[i] for i in idx])

    return part(False), part(True)


@dataclass
class SelectionStore:
    """A feature store whose ``load`` also understands ``<split>@fit`` / ``<split>@holdout``."""

    store: FeatureStore
    fraction: float

    @property
    def meta(self) -> dict[str, Any]:
        return self.store.meta

    @property
    def root(self) -> str:
        return self.store.root

    def load(self, *splits: str) -> FeatureSplit:
        if len(splits) == 1 and splits[0].endswith((FIT, HOLDOUT)):
            name, _, part = splits[0].rpartition("@")
            whole = self.store.load(name)
            fit, holdout = split_rows(whole, self.fraction)
            if not len(fit) or not len(holdout):
                raise ValueError(f"split {name!r} of {self.root} has {len(whole)} rows: too few to hold out "
                                 f"{self.fraction:.0%} of them to score on and train on the rest "
                                 "(eval.score_on=val, eval.selection_holdout)")
            return holdout if part == "holdout" else fit
        return self.store.load(*splits)


def selection_config(cfg: Config) -> Config:
    """The config whose split names point every task at its selection split (see the module docstring)."""
    d, e = cfg.data, cfg.eval
    return cfg.model_copy(update={
        "data": d.model_copy(update={"test_split": d.val_split, "privacy_train_split": d.privacy_train_split + FIT,
                                     "privacy_test_split": d.privacy_train_split + HOLDOUT}),
        "eval": e.model_copy(update={
            "reid": e.reid.model_copy(update={"split": d.val_split}),
            "tad": e.tad.model_copy(update={"train_split": e.tad.train_split + FIT,
                                            "test_split": e.tad.train_split + HOLDOUT}),
            "anomaly": e.anomaly.model_copy(update={"train_split": e.anomaly.train_split + FIT,
                                                    "test_split": e.anomaly.train_split + HOLDOUT}),
        }),
    })


def selection_view(cfg: Config, tasks: list[str], manifests: dict[str, str], stores: dict[str, FeatureStore]
                   ) -> tuple[Config, list[str], dict[str, SelectionStore], dict[str, str]]:
    """What :func:`~splavu_ray.evaluation.suite.evaluate_run` runs with ``eval.score_on: val``: the rewritten
    config, the tasks that can be scored this way, the wrapped stores (keyed like ``stores``) and the reasons
    for the tasks left out (``manifests``: task -> key of its store)."""
    skipped = {t: NOT_SCORED_ON_VAL[t] for t in tasks if t in NOT_SCORED_ON_VAL}
    if "anomaly" in tasks and not _holdout_has_segments(stores[manifests["anomaly"]], cfg):
        skipped["anomaly"] = (f"the held-out part of {cfg.eval.anomaly.train_split!r} has no frame-level anomaly "
                              "segments (UCF-Crime's training videos have video labels only); not scored with "
                              "eval.score_on=val")
    wrapped = {k: SelectionStore(s, cfg.eval.selection_holdout) for k, s in stores.items()}
    return selection_config(cfg), [t for t in tasks if t not in skipped], wrapped, skipped


def _holdout_has_segments(store: FeatureStore, cfg: Config) -> bool:
    table = store.columns("split", "uri", "anomaly_segments").to_pylist()
    return any(r["anomaly_segments"] for r in table
               if r["split"] == cfg.eval.anomaly.train_split and in_holdout(str(r["uri"]), cfg.eval.selection_holdout))
