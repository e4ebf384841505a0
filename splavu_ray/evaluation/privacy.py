"""The privacy task: how much private-attribute information attackers recover from the features.

Attackers are trained WITH labels on features of the privacy split (the paper's MLP, a linear one, and a
bank of lr x weight-decay heads, eval.privacy) and scored by per-attribute AP, cMAP and macro-F1 at 0.5.
The headline is the worst case: the highest cMAP any attacker reaches.

What an attacker sees of a row (:func:`attack_inputs`): an image (VISPR) is its static clip; a video
(PA-HMDB51, VP-HMDB51, VP-UCF101: video-level labels) is the mean of its clip features, each view
(raw / f_A) applied to the video's clips first, so the attacker probes the whole video.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .. import probes
from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.bootstrap import weighted_cmap
from ..metrics.classification import (
    chance_cmap,
    leakage_drop,
    per_attribute_ap,
    random_average_precision,
    random_cmap,
    relative_change,
)
from ..models.adapter import AnonymizingAdapter
from . import reuse
from .report import TableColumn
from .task import EvalInputError, EvalTask, fit_kw, split_rows, views
from .uncertainty import Headline, intervals, seeded, training_seeds

# Manifest 'dataset' values of the privacy benchmarks, as the table names them.
BENCHMARKS = {"vispr": "VISPR", "pa_hmdb51": "PA-HMDB51", "vp_hmdb51": "VP-HMDB51", "vp_ucf101": "VP-UCF101"}


def attack_inputs(split: FeatureSplit, view: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(N, d): one attacker input per row under ``view``. Image rows (and rows without clips): the first
    static clip. Video rows: ``view`` on the video's (L, d) clips, then their mean (videos are batched by
    clip count, so f_A sees each video's clips together, as in the action task)."""
    out = np.zeros((len(split), split.dim or split.static[0].shape[-1]), dtype=np.float32)
    still = [i for i, r in enumerate(split.rows) if r.get("media") != "video" or not len(split.clips[i])]
    if still:
        out[still] = view(np.stack([split.static[i][0] for i in still]))
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(split.rows):
        if r.get("media") == "video" and len(split.clips[i]):
            by_len.setdefault(len(split.clips[i]), []).append(i)
    for idx in by_len.values():
        out[idx] = view(np.stack([split.clips[i] for i in idx])).mean(axis=1)
    return out


def input_kind(split: FeatureSplit) -> str:
    """results.json's record of what the attackers saw."""
    videos = sum(r.get("media") == "video" and len(c) > 0 for r, c in zip(split.rows, split.clips))
    if not videos:
        return "static clip per image"
    return "mean clip feature per video" if videos == len(split) else "mean clip feature per video, static clip per image"


def benchmark(train: FeatureSplit, test: FeatureSplit) -> str | None:
    """The privacy benchmark the rows come from (its table name), when it is one of :data:`BENCHMARKS`."""
    names = {r.get("dataset") for r in train.rows + test.rows}
    return BENCHMARKS.get(names.pop()) if len(names) == 1 else None


def run_attackers(cfg: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  names: list[str]) -> dict[str, probes.AttackResult]:
    """{"mlp": ..., "linear": ..., "bank/lr0.001_wd0.01": ...} for the configured attackers."""
    ev = cfg.eval.privacy
    groups, labels = [], []
    for kind in ("mlp", "linear"):
        if kind in ev.attackers:
            groups.append((kind, [ev.attacker_lr], [0.0]))
            labels.append(kind)
    if "bank" in ev.attackers:
        groups.append((ev.bank_kind, *probes.grid(ev.bank_lrs, ev.bank_weight_decays)))
        labels.append("bank")
    # All attackers in one pass over the data: each result is what its own training would give (probes.attack_groups).
    # The same inputs give the same results (every sweep trial's raw view): reused within the process.
    key = reuse.content_key("attack_groups", train_x, train_y, test_x, test_y, names, ev.model_dump(), cfg.seed,
                            fit_kw(cfg), torch.get_num_threads())
    results = reuse.reused(key, lambda: probes.attack_groups(train_x, train_y, test_x, test_y, names, groups,
                                                             ev.attacker_epochs, ev.attacker_hidden, cfg.seed,
                                                             **fit_kw(cfg)))
    out = {}
    for label, result in zip(labels, results):
        if label == "bank":
            out.update({f"bank/{k}": v for k, v in result.items()})
        else:
            (out[label],) = result.values()
    return out


def privacy_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    names = list(train.attributes)
    ytr, yte = train.attribute_matrix(), test.attribute_matrix()
    feats = {tag: (attack_inputs(train, f), attack_inputs(test, f)) for tag, f in views(adapter)}
    seeds = training_seeds(cfg)
    heads = {"cmap": Headline(), "cmap_worst": Headline()}
    out: dict = {"attackers": {}}
    worst_ap: dict[str, dict[str, float]] = {}
    for i, seed in enumerate(seeds):
        for tag, (xtr, xte) in feats.items():
            results = run_attackers(seeded(cfg, seed), xtr, ytr, xte, yte, names)
            mlp = results["mlp"]
            worst = max(results, key=lambda k: results[k].cmap)
            every = [r.probs for r in results.values()]
            heads["cmap"].add(tag, mlp.cmap, lambda c, p=mlp.probs: weighted_cmap(p, yte, c))
            # the worst case of each resample: the highest cMAP any attacker reaches on it
            heads["cmap_worst"].add(tag, results[worst].cmap,
                                    lambda c, ps=every: np.max([weighted_cmap(p, yte, c) for p in ps], axis=0))
            if i:  # the details (per attacker, per attribute) are the first seed's
                continue
            for name, res in results.items():
                out["attackers"].setdefault(name, {})[tag] = res.as_dict()
            out[f"f1_{tag}"], out[f"per_attribute_{tag}"] = mlp.macro_f1, mlp.per_attribute
            out[f"worst_attacker_{tag}"], out[f"f1_worst_{tag}"] = worst, results[worst].macro_f1
            for attr in mlp.per_attribute:  # per attribute, the highest AP any attacker reached
                worst_ap.setdefault(attr, {})[tag] = max(r.per_attribute[attr] for r in results.values())
    for tag in ("raw", "anonymized"):  # the mean over seeds (the single value with one seed)
        out[f"cmap_{tag}"], out[f"cmap_worst_{tag}"] = heads["cmap"].point(tag), heads["cmap_worst"].point(tag)
    chance = per_attribute_ap(np.zeros(yte.shape), yte, names)
    for attr, v in worst_ap.items():
        v["chance"] = chance[attr]
        v["chance_random"] = random_average_precision(yte[:, names.index(attr)])
    out["per_attribute"] = worst_ap
    out["cmap_chance"] = chance_cmap(yte)
    out["cmap_worst_chance"] = out["cmap_chance"]
    reference = {"constant": out["cmap_chance"], "random_scores": random_cmap(yte)}
    out["chance_reference"] = {"cmap": dict(reference), "cmap_worst": dict(reference)}
    unit = "test image" if input_kind(test).startswith("static") else "test video"
    out["intervals"] = intervals(cfg, len(test), unit, heads, seeds)
    out["relative_change"] = relative_change(out["cmap_raw"], out["cmap_anonymized"])
    out["worst_relative_change"] = relative_change(out["cmap_worst_raw"], out["cmap_worst_anonymized"])
    out["leakage_above_chance_drop"] = leakage_drop(out["cmap_raw"], out["cmap_anonymized"], out["cmap_chance"])
    out["sizes"] = {"train": len(train), "test": len(test)}
    out["attributes"], out["input"] = names, input_kind(train)
    out["attributes_not_scored"] = [a for a in names if a not in worst_ap]  # one label only in the test split
    if name := benchmark(train, test):
        out["benchmark"] = name
    return out


def attribute_table(results: dict) -> str | None:
    """Markdown: per-attribute AP and cMAP (worst attacker) raw / anonymized / chance, for a named privacy
    benchmark (the paper's per-attribute report); None for other privacy data."""
    p = results.get("privacy") or {}
    if not p.get("benchmark") or not p.get("per_attribute"):
        return None
    attrs = list(p.get("attributes") or p["per_attribute"])  # n/a: only one label in the test split
    rows = [["", *attrs, "cMAP"], ["---"] * (len(attrs) + 2)]
    for tag in ("raw", "anonymized", "chance"):
        cells = [p["per_attribute"].get(a, {}).get(tag) for a in attrs] + [p.get(f"cmap_worst_{tag}")]
        rows.append([tag, *("n/a" if v is None else f"{v:.2f}" for v in cells)])
    title = (f"Privacy per attribute on {p['benchmark']} (AP %, worst attacker per attribute, {p.get('input', '')}; "
             "lower = more private)")
    return title + "\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)


class PrivacyTask(EvalTask):
    name = "privacy"
    optional = False
    columns = (TableColumn("privacy cMAP, worst attacker", "privacy", "cmap_worst", False, "privacy", "benchmark"),
               TableColumn("privacy cMAP, paper MLP", "privacy", "cmap", False, "privacy", "benchmark"))

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
