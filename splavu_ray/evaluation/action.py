"""The action task: a linear probe on (anonymized) clip features, top-1 over each test video's clips.

The probe (eval.action: an L2 logistic regression by default) is fitted on the training videos; each
test video's score is the softmax averaged over its evenly spaced clips.
"""

from __future__ import annotations

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.bootstrap import weighted_accuracy
from ..metrics.classification import majority_top1, relative_change, top1
from ..models.adapter import AnonymizingAdapter
from .report import TableColumn
from .task import EvalInputError, EvalTask, probe_scores, split_rows, views
from .uncertainty import Headline, intervals, probe_seeds, seeded


def action_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    atr, ate = train.stacked_clips(), test.stacked_clips()
    seeds = probe_seeds(cfg)
    head = Headline()
    out: dict = {}
    for tag, f in views(adapter):
        xtr, xte = f(atr), f(ate)
        for seed in seeds:
            scores = probe_scores(seeded(cfg, seed), xtr, train.action_ids, xte, len(train.actions))
            hits = scores.argmax(axis=1) == test.action_ids
            head.add(tag, top1(scores, test.action_ids), lambda c, h=hits: weighted_accuracy(h, c))
        out[f"top1_{tag}"] = head.point(tag)
    out["relative_change"] = relative_change(out["top1_raw"], out["top1_anonymized"])
    out["delta_points"] = out["top1_anonymized"] - out["top1_raw"]
    out["top1_chance"] = 100.0 / max(1, len(train.actions))
    out["chance_reference"] = {"top1": {"uniform": out["top1_chance"],
                                        "majority": majority_top1(train.action_ids, test.action_ids)}}
    out["intervals"] = intervals(cfg, len(test), "test video", {"top1": head}, seeds)
    out["probe"] = cfg.eval.action.probe
    out["clips_per_video"] = int(ate.shape[1])
    out["sizes"] = {"train": len(train), "test": len(test)}
    return out


class ActionTask(EvalTask):
    name = "action"
    optional = False
    columns = (TableColumn("action top-1", "action", "top1", True),)

    def check(self, cfg: Config, path: str) -> None:
        d = cfg.data
        for split in (d.train_split, d.test_split):
            man, rows = split_rows(path, split)
            if not rows:
                raise EvalInputError(f"manifest {path!r} has no rows in split {split!r}")
            bad = sum(1 for r in rows if r.get("action_id") is None or r["action_id"] < 0)
            if bad or not man.actions:
                raise EvalInputError(f"manifest {path!r}, split {split!r}: {bad} of {len(rows)} rows have no action label")

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        d = cfg.data
        return action_section(cfg, adapter, store.load(d.train_split), store.load(d.test_split))
