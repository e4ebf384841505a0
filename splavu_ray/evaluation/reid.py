"""The re-identification task (the temporal private attribute): top-1 subject retrieval, no training.

CASIA-B style: per subject, the first half of its videos form the gallery and the rest are probes; each
probe retrieves its nearest gallery video (cosine similarity of the mean clip feature).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..metrics.bootstrap import weighted_accuracy
from ..metrics.classification import relative_change, retrieval_chance, retrieval_hits
from ..models.adapter import AnonymizingAdapter
from .report import TableColumn
from .task import EvalInputError, EvalTask, split_rows, views
from .uncertainty import Headline, intervals


def gallery_probe_split(subject_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per subject, the first half (rounded up) of its videos in manifest order form the gallery and
    the rest are probes (CASIA-B style: gallery and probes are different sequences of each subject).
    Subjects with one video stay in the gallery as distractors."""
    seen: dict[str, list[int]] = {}
    for i, s in enumerate(subject_ids):
        seen.setdefault(s, []).append(i)
    gallery, probe = [], []
    for idx in seen.values():
        k = -(-len(idx) // 2)
        gallery += idx[:k]
        probe += idx[k:]
    return np.array(sorted(gallery), dtype=np.int64), np.array(sorted(probe), dtype=np.int64)


def video_vectors(split: FeatureSplit, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    # f_A sees each video's whole clip sequence (it attends across it); the video vector is the mean.
    return np.stack([f(c[None])[0].mean(axis=0) for c in split.clips])


def reid_section(cfg: Config, adapter: AnonymizingAdapter, split: FeatureSplit, source: str = "") -> dict:
    ids = [r["subject_id"] for r in split.rows]
    gallery, probe = gallery_probe_split(ids)
    ids_a = np.array(ids)
    out: dict = {"source": source, "gallery": int(len(gallery)), "probes": int(len(probe)),
                 "subjects": len(set(ids_a[probe].tolist()))}
    head = Headline()  # no training, so no seeds: only the probes are resampled
    for tag, f in views(adapter):
        v = video_vectors(split, f)
        hits = retrieval_hits(v[gallery], ids_a[gallery], v[probe], ids_a[probe])
        out[f"top1_{tag}"] = 100.0 * float(np.mean(hits))
        head.add(tag, out[f"top1_{tag}"], lambda c, h=hits: weighted_accuracy(h, c))
    out["top1_chance"] = retrieval_chance(ids_a[gallery], ids_a[probe])
    out["chance_reference"] = {"top1": {"random_gallery_pick": out["top1_chance"]}}
    out["intervals"] = intervals(cfg, len(probe), "probe video", {"top1": head}, [cfg.seed])
    out["relative_change"] = relative_change(out["top1_raw"], out["top1_anonymized"])
    return out


class ReidTask(EvalTask):
    name = "reid"
    columns = (TableColumn("subject re-id top-1", "reid", "top1", False, "privacy"),)

    def own_manifest(self, cfg: Config) -> str | None:
        return cfg.eval.reid.manifest

    def check(self, cfg: Config, path: str) -> None:
        split = cfg.eval.reid.split
        _, rows = split_rows(path, split)
        where = f"re-identification manifest {path!r}, split {split!r}"
        missing = sum(1 for r in rows if not r.get("subject_id"))
        if not rows or missing:
            raise EvalInputError(f"{where}: {missing if rows else 'all'} of {len(rows)} rows lack a 'subject_id'")
        _, probe = gallery_probe_split([r["subject_id"] for r in rows])
        if not len(probe):
            raise EvalInputError(f"{where}: no subject has two or more videos, so there is nothing to retrieve")

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        return reid_section(cfg, adapter, store.load(cfg.eval.reid.split), store.meta.get("manifest", ""))
