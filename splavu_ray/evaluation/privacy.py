"""The privacy task: how much private-attribute information attackers recover from the features.

Attackers are trained WITH labels on static-clip features of the privacy split (the paper's MLP, a
linear one, and a bank of lr x weight-decay heads, eval.privacy) and scored by per-attribute AP, cMAP
and macro-F1 at 0.5. The headline is the worst case: the highest cMAP any attacker reaches.
"""

from __future__ import annotations

import numpy as np

from .. import probes
from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.classification import chance_cmap, leakage_drop, per_attribute_ap, relative_change
from ..models.adapter import AnonymizingAdapter
from .report import TableColumn
from .task import EvalInputError, EvalTask, fit_kw, split_rows, views


def run_attackers(cfg: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  names: list[str]) -> dict[str, probes.AttackResult]:
    """{"mlp": ..., "linear": ..., "bank/lr0.001_wd0.01": ...} for the configured attackers."""
    ev = cfg.eval.privacy
    out = {}
    for kind in ("mlp", "linear"):
        if kind in ev.attackers:
            out[kind] = probes.attack(train_x, train_y, test_x, test_y, names, kind, ev.attacker_epochs,
                                      ev.attacker_lr, hidden=ev.attacker_hidden, seed=cfg.seed, **fit_kw(cfg))
    if "bank" in ev.attackers:
        lrs, wds = probes.grid(ev.bank_lrs, ev.bank_weight_decays)
        bank = probes.attack_bank(train_x, train_y, test_x, test_y, names, lrs, wds, ev.bank_kind,
                                  ev.attacker_epochs, ev.attacker_hidden, cfg.seed, **fit_kw(cfg))
        out.update({f"bank/{k}": v for k, v in bank.items()})
    return out


def privacy_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    names = list(train.attributes)
    ytr, yte = train.attribute_matrix(), test.attribute_matrix()
    str_, ste = train.first_static(), test.first_static()
    out: dict = {"attackers": {}}
    worst_ap: dict[str, dict[str, float]] = {}
    for tag, f in views(adapter):
        results = run_attackers(cfg, f(str_), ytr, f(ste), yte, names)
        for name, res in results.items():
            out["attackers"].setdefault(name, {})[tag] = res.as_dict()
        mlp = results["mlp"]
        out[f"cmap_{tag}"], out[f"f1_{tag}"], out[f"per_attribute_{tag}"] = mlp.cmap, mlp.macro_f1, mlp.per_attribute
        worst = max(results, key=lambda k: results[k].cmap)
        out[f"cmap_worst_{tag}"], out[f"worst_attacker_{tag}"] = results[worst].cmap, worst
        out[f"f1_worst_{tag}"] = results[worst].macro_f1
        for attr in mlp.per_attribute:  # per attribute, the highest AP any attacker reached
            worst_ap.setdefault(attr, {})[tag] = max(r.per_attribute[attr] for r in results.values())
    chance = per_attribute_ap(np.zeros(yte.shape), yte, names)
    for attr, v in worst_ap.items():
        v["chance"] = chance[attr]
    out["per_attribute"] = worst_ap
    out["cmap_chance"] = chance_cmap(yte)
    out["cmap_worst_chance"] = out["cmap_chance"]
    out["relative_change"] = relative_change(out["cmap_raw"], out["cmap_anonymized"])
    out["worst_relative_change"] = relative_change(out["cmap_worst_raw"], out["cmap_worst_anonymized"])
    out["leakage_above_chance_drop"] = leakage_drop(out["cmap_raw"], out["cmap_anonymized"], out["cmap_chance"])
    out["sizes"] = {"train": len(train), "test": len(test)}
    return out


class PrivacyTask(EvalTask):
    name = "privacy"
    optional = False
    columns = (TableColumn("privacy cMAP, worst attacker", "privacy", "cmap_worst", False, "privacy"),
               TableColumn("privacy cMAP, paper MLP", "privacy", "cmap", False, "privacy"))

    def manifest(self, cfg: Config, manifests: dict[str, str]) -> str:
        return manifests["privacy"]

    def check(self, cfg: Config, path: str) -> None:
        d = cfg.data
        for split in (d.privacy_train_split, d.privacy_test_split):
            man, rows = split_rows(path, split)
            if not rows:
                raise EvalInputError(f"privacy manifest {path!r} has no rows in split {split!r} (data.privacy_*_split)")
            if not man.attributes:
                raise EvalInputError(f"privacy manifest {path!r} has no private-attribute labels (column "
                                     "'private_attributes' is empty everywhere)")
            y = man.split(split).attribute_matrix()
            pos = y.sum(axis=0)
            if not ((pos > 0) & (pos < len(y))).any():
                raise EvalInputError(f"privacy manifest {path!r}, split {split!r}: no private attribute has both "
                                     "present and absent examples, so no attacker can be trained or scored")

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        d = cfg.data
        return privacy_section(cfg, adapter, store.load(d.privacy_train_split), store.load(d.privacy_test_split))
