"""Evaluation of raw vs anonymized features: privacy leakage (attacker cMAP) and action top-1.

``evaluate_features`` is plain Python over a feature store; ``report_table`` renders the result.
"""

from __future__ import annotations

import numpy as np
import torch

from . import metrics
from .adapter import AnonymizingAdapter
from .config import Config
from .feature_store import FeatureSplit
from .probes import action_probe, attack


@torch.no_grad()
def anonymize(adapter: AnonymizingAdapter, feats: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Apply f_A to (N, d) or (N, L, d) features."""
    adapter.eval()
    out = [adapter(torch.from_numpy(feats[i:i + batch]).float()).numpy() for i in range(0, len(feats), batch)]
    return np.concatenate(out) if out else feats


def evaluate_features(cfg: Config, adapter: AnonymizingAdapter, privacy_train: FeatureSplit,
                      privacy_test: FeatureSplit, action_train: FeatureSplit, action_test: FeatureSplit) -> dict:
    """results.json content: privacy leakage on static clips and action top-1, raw vs anonymized."""
    names = list(privacy_train.attributes)
    ytr, yte = privacy_train.attribute_matrix(), privacy_test.attribute_matrix()
    str_, ste = privacy_train.first_static(), privacy_test.first_static()
    atr, ate = action_train.stacked_clips(), action_test.stacked_clips()
    ev = cfg.eval
    out: dict = {"privacy": {}, "action": {}}
    for tag, f in (("raw", lambda x: x), ("anonymized", lambda x: anonymize(adapter, x))):
        res = attack(f(str_), ytr, f(ste), yte, names, "mlp", ev.attacker_epochs, ev.attacker_lr,
                     hidden=ev.attacker_hidden, seed=cfg.seed)
        out["privacy"][f"cmap_{tag}"] = res.cmap
        out["privacy"][f"f1_{tag}"] = res.macro_f1
        out["privacy"][f"per_attribute_{tag}"] = res.per_attribute
        out["action"][f"top1_{tag}"] = action_probe(f(atr), action_train.action_ids, f(ate), action_test.action_ids,
                                                    len(action_train.actions), ev.probe_epochs, ev.probe_lr, cfg.seed)
    p, a = out["privacy"], out["action"]
    p["cmap_chance"] = metrics.chance_cmap(yte)
    p["relative_change"] = metrics.relative_change(p["cmap_raw"], p["cmap_anonymized"])
    p["leakage_above_chance_drop"] = metrics.leakage_drop(p["cmap_raw"], p["cmap_anonymized"], p["cmap_chance"])
    a["relative_change"] = metrics.relative_change(a["top1_raw"], a["top1_anonymized"])
    a["delta_points"] = a["top1_anonymized"] - a["top1_raw"]
    out["sizes"] = {"privacy_train": len(privacy_train), "privacy_test": len(privacy_test),
                    "action_train": len(action_train), "action_test": len(action_test)}
    return out


def report_table(results: dict) -> str:
    p, a = results["privacy"], results["action"]
    rows = [
        ("", "privacy cMAP (lower=better)", "action top-1"),
        ("raw", f"{p['cmap_raw']:.2f}", f"{a['top1_raw']:.2f}"),
        ("anonymized", f"{p['cmap_anonymized']:.2f}", f"{a['top1_anonymized']:.2f}"),
        ("change", f"{p['relative_change']:+.1f}%", f"{a['delta_points']:+.2f} pts ({a['relative_change']:+.1f}%)"),
        ("chance", f"{p['cmap_chance']:.2f}", ""),
        ("leakage above chance", f"{-p['leakage_above_chance_drop']:+.1f}%", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[1:]])
