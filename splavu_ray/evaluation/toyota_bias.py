"""The natural bias task: the gender-presentation gap of the action probe on Toyota Smarthome.

Unlike NTU-Bias-F / -M (splavu_ray.evaluation.bias), nothing is resampled: the probe trains on the
cross-subject training subjects and is scored on the test subjects, as imbalanced as the dataset is
(bias_protocols.natural_cross_subject). Reported raw vs anonymized: per-group top-1, overall top-1,
the gap between the groups (the headline) and Toyota Smarthome's own action metric, the mean per-class
accuracy (overall and per group).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.classification import accuracy_gap, per_group_accuracy, relative_change, top1
from ..models.adapter import AnonymizingAdapter
from . import bias_protocols
from .report import TableColumn
from .task import EvalInputError, EvalTask, probe_scores, split_rows, views

PROTOCOL = "natural (Toyota Smarthome cross-subject)"


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of their top-1 recall, in percent (predictions of
    classes absent from ``labels`` count as errors, which scikit-learn warns about: silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return 100.0 * float(balanced_accuracy_score(np.asarray(labels), np.asarray(scores).argmax(axis=1)))


def group_report(scores: np.ndarray, labels: np.ndarray, groups: list[str]) -> dict:
    per = per_group_accuracy(scores, labels, groups)
    g = np.asarray(groups)
    return {"per_group": per, "overall": top1(scores, labels), "gap": accuracy_gap(per),
            "mean_class_accuracy": mean_class_accuracy(scores, labels),
            "mean_class_accuracy_per_group": {k: mean_class_accuracy(scores[g == k], labels[g == k]) for k in per}}


def toyota_bias_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit,
                        source: str = "") -> dict:
    try:  # checked before any work, but the store may lack videos that failed to decode
        sel = bias_protocols.natural_cross_subject(train.rows, test.rows)
    except bias_protocols.BiasProtocolError as exc:
        raise EvalInputError(f"Toyota Smarthome feature store: {exc}") from None
    groups = [bias_protocols.gender_group(r["gender"]) for r in test.rows]
    out: dict = {"protocol": PROTOCOL, "source": source, "train_videos": len(train), "test_videos": len(test),
                 "subjects": sel["subjects"],
                 "train_group_share": bias_protocols.group_shares(train.rows, sel["train"]),
                 "test_group_share": bias_protocols.group_shares(test.rows, sel["test"])}
    ytr, yte = train.action_ids, test.action_ids
    for tag, f in views(adapter):
        scores = probe_scores(cfg, f(train.stacked_clips()), ytr, f(test.stacked_clips()), len(train.actions))
        out[tag] = group_report(scores, yte, groups)
        out[f"gap_{tag}"] = out[tag]["gap"]
        out[f"overall_{tag}"] = out[tag]["overall"]
    out["relative_change"] = relative_change(out["gap_raw"], out["gap_anonymized"])
    return out


class ToyotaBiasTask(EvalTask):
    name = "toyota_bias"
    columns = (TableColumn("bias gap Toyota Smarthome", "toyota_bias", "gap", False, "fairness"),)

    def own_manifest(self, cfg: Config) -> str | None:
        return cfg.eval.toyota_bias.manifest

    def default_on(self, cfg: Config) -> bool:
        return cfg.eval.toyota_bias.manifest is not None

    def check(self, cfg: Config, path: str) -> None:
        t = cfg.eval.toyota_bias
        if t.manifest is None:
            raise EvalInputError("no Toyota Smarthome manifest: set eval.toyota_bias.manifest (python -m "
                                 "splavu_ray.data.builders toyota_smarthome ROOT OUT.parquet --genders CSV)")
        splits = {}
        for split in (t.train_split, t.test_split):
            _, splits[split] = split_rows(path, split)
        try:
            for split, rows in splits.items():
                bias_protocols.check_labels(rows, f"Toyota Smarthome manifest {path!r}, split {split!r}")
            bias_protocols.natural_cross_subject(splits[t.train_split], splits[t.test_split])
        except bias_protocols.BiasProtocolError as exc:
            raise EvalInputError(str(exc)) from None

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        t = cfg.eval.toyota_bias
        return toyota_bias_section(cfg, adapter, store.load(t.train_split), store.load(t.test_split),
                                   store.meta.get("manifest", ""))
