"""The bias task: the gender-presentation gap of the action probe (NTU-Bias-F / -M and the natural split).

The protocols (which videos train and test the probe) are built by splavu_ray.evaluation.bias_protocols;
the metric is per-group accuracy and the gap between the groups, raw vs anonymized.
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.bootstrap import weighted_group_gap
from ..metrics.classification import accuracy_gap, per_group_accuracy, top1
from ..models.adapter import AnonymizingAdapter
from . import bias_protocols
from .report import TableColumn
from .task import EvalInputError, EvalTask, probe_scores, split_rows, views
from .uncertainty import Headline, intervals, probe_seeds, seeded


def _group_report(scores: np.ndarray, labels: np.ndarray, groups: list[str]) -> dict:
    per = per_group_accuracy(scores, labels, groups)
    return {"per_group": per, "overall": top1(scores, labels), "gap": accuracy_gap(per)}


def bias_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit,
                 source: str = "") -> dict:
    b = cfg.eval.bias
    actions = list(train.actions)
    protocols = {
        "ntu_bias_f": bias_protocols.ntu_bias(train.rows, test.rows, actions, "F", b.flipped_action, b.p, cfg.seed),
        "ntu_bias_m": bias_protocols.ntu_bias(train.rows, test.rows, actions, "M", b.flipped_action, b.p, cfg.seed),
        "natural": bias_protocols.natural(train.rows, test.rows),
    }
    ytr, yte = train.action_ids, test.action_ids
    gte = np.array([bias_protocols.gender_group(r["gender"]) for r in test.rows])
    out: dict = {"protocols": {}, "headline": "ntu_bias_f", "source": source}
    seeds, headline = probe_seeds(cfg), Headline()
    for tag, f in views(adapter):
        xtr, xte = f(train.stacked_clips()), f(test.stacked_clips())
        for name, sel in protocols.items():
            tr, te = sel["train"], sel["test"]
            scores = probe_scores(cfg, xtr[tr], ytr[tr], xte[te], len(actions))
            entry = out["protocols"].setdefault(name, {
                "flipped_action": sel["flipped_action"], "train_videos": int(len(tr)), "test_videos": int(len(te)),
                "train_group_share": bias_protocols.group_shares(train.rows, tr),
                "test_group_share": bias_protocols.group_shares(test.rows, te),
            })
            entry[tag] = _group_report(scores, yte[te], gte[te].tolist())
            if name == "ntu_bias_f":  # the headline: its gap per probe seed, and what the bootstrap resamples
                for seed in seeds:
                    s = scores if seed == cfg.seed else probe_scores(seeded(cfg, seed), xtr[tr], ytr[tr], xte[te],
                                                                     len(actions))
                    gap = accuracy_gap(per_group_accuracy(s, yte[te], gte[te].tolist()))
                    hits = s.argmax(axis=1) == yte[te]
                    headline.add(tag, gap, lambda c, h=hits, g=gte[te]: weighted_group_gap(h, g, c))
    head = out["protocols"]["ntu_bias_f"]
    for tag in ("raw", "anonymized"):
        out[f"gap_{tag}"] = headline.point(tag)
        out[f"overall_{tag}"] = head[tag]["overall"]
        out[f"natural_gap_{tag}"] = out["protocols"]["natural"][tag]["gap"]
    out["gap_chance"] = 0.0  # no bias: every group equally accurate
    out["chance_reference"] = {"gap": {"no_bias": 0.0}}
    out["intervals"] = intervals(cfg, len(protocols["ntu_bias_f"]["test"]), "test video", {"gap": headline}, seeds)
    return out


class BiasTask(EvalTask):
    name = "bias"
    columns = (TableColumn("bias gap NTU-Bias-F", "bias", "gap", False, "fairness"),)

    def own_manifest(self, cfg: Config) -> str | None:
        return cfg.eval.bias.manifest

    def check(self, cfg: Config, path: str) -> None:
        b = cfg.eval.bias
        for split in (b.train_split, b.test_split):
            man, rows = split_rows(path, split)
            try:
                bias_protocols.check_labels(rows, f"bias manifest {path!r}, split {split!r}")
                if split == b.train_split:
                    bias_protocols.resolve_flipped_action(man.actions, b.flipped_action)
            except bias_protocols.BiasProtocolError as exc:
                raise EvalInputError(str(exc)) from None

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        b = cfg.eval.bias
        return bias_section(cfg, adapter, store.load(b.train_split), store.load(b.test_split),
                            store.meta.get("manifest", ""))
