"""The gait task (the temporal private attribute on CASIA-B): cross-view recognition of unseen subjects.

The standard CASIA-B protocol, with no training (the unseen subjects 075-124, split ``eval.gait.split``):

- gallery: each subject's normal walks nm-01..nm-04; probes: nm-05..06 (NM), bg-01..02 (BG), cl-01..02 (CL);
- for every probe view and every OTHER gallery view (identical-view pairs are excluded, as commonly
  reported), each probe of that view takes the identity of its cosine nearest neighbour among the gallery
  walks of that gallery view; top-1 is averaged over the gallery views, then over the probe views;
- reported per condition (NM / BG / CL) and as the mean of the three, raw vs anonymized.

A walk's vector is the mean of its clip features after f_A has seen the whole clip sequence (as in
splavu_ray.evaluation.reid). Condition, sequence and view come from CASIA-B's file names, which the builder
keeps (``splavu_ray.data.builders.casia_b``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..config import Config
from ..data.builders.casia_b import CONDITIONS, Walk, parse_sequence
from ..data.feature_store import FeatureStore
from ..metrics.classification import relative_change, retrieval_chance, retrieval_top1
from ..models.adapter import AnonymizingAdapter
from .reid import video_vectors
from .report import TableColumn
from .task import EvalInputError, EvalTask, split_rows, views

GALLERY = ("nm-01", "nm-02", "nm-03", "nm-04")
PROBES = {"nm": ("nm-05", "nm-06"), "bg": ("bg-01", "bg-02"), "cl": ("cl-01", "cl-02")}


def walks_of(rows: Sequence[dict], where: str) -> list[Walk]:
    """The CASIA-B walk of every row (subject from ``subject_id``); a row that names none is an error."""
    out, bad = [], []
    for r in rows:
        walk = parse_sequence(str(r.get("uri") or ""))
        if walk is None or not r.get("subject_id"):
            bad.append(r.get("uri"))
            continue
        out.append(Walk(str(r["subject_id"]), walk.condition, walk.sequence, walk.view))
    if bad:
        raise EvalInputError(f"{where}: {len(bad)} of {len(rows)} rows are not CASIA-B walks with a subject_id "
                             f"(file names like '075-nm-05-090.avi', as python -m splavu_ray.data.builders "
                             f"casia_b writes them), first {bad[0]!r}")
    return out


def gallery_probe_split(walks: Sequence[Walk]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Indices of the gallery walks (nm-01..04) and of each condition's probes (conditions without any
    probe are left out)."""
    gallery = np.array([i for i, w in enumerate(walks) if w.sequence in GALLERY], dtype=np.int64)
    probes = {c: np.array([i for i, w in enumerate(walks) if w.sequence in seqs], dtype=np.int64)
              for c, seqs in PROBES.items()}
    return gallery, {c: idx for c, idx in probes.items() if len(idx)}


def cross_view_pairs(walks: Sequence[Walk], gallery: np.ndarray, probes: np.ndarray
                     ) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(probe view, gallery view, gallery indices, probe indices) for every pair of DIFFERENT views
    that has both gallery walks and probes (identical-view pairs are excluded)."""
    view = np.array([w.view for w in walks])
    for pv in sorted(set(view[probes].tolist())):
        p = probes[view[probes] == pv]
        for gv in sorted(set(view[gallery].tolist())):
            if gv != pv:
                yield pv, gv, gallery[view[gallery] == gv], p


def cross_view_top1(vectors: np.ndarray, walks: Sequence[Walk], gallery: np.ndarray, probes: np.ndarray
                    ) -> tuple[float, dict[str, float], float]:
    """(mean top-1, top-1 per probe view, mean chance): per probe view the mean over the other gallery
    views, then the mean over probe views; in percent."""
    ids = np.array([w.subject for w in walks])
    acc: dict[str, list[float]] = {}
    chance: dict[str, list[float]] = {}
    for pv, _, g, p in cross_view_pairs(walks, gallery, probes):
        acc.setdefault(pv, []).append(retrieval_top1(vectors[g], ids[g], vectors[p], ids[p]))
        chance.setdefault(pv, []).append(retrieval_chance(ids[g], ids[p]))
    per_view = {v: float(np.mean(a)) for v, a in acc.items()}
    mean_chance = float(np.mean([np.mean(c) for c in chance.values()])) if chance else float("nan")
    return (float(np.mean(list(per_view.values()))) if per_view else float("nan")), per_view, mean_chance


def check_walks(walks: Sequence[Walk], where: str) -> None:
    """Enough for the protocol: gallery walks and probes whose views differ, subjects shared by both."""
    gallery, probes = gallery_probe_split(walks)
    if not len(gallery) or not probes:
        raise EvalInputError(f"{where}: needs gallery walks {list(GALLERY)} and probes "
                             f"{[s for seqs in PROBES.values() for s in seqs]}; found {len(gallery)} gallery walk(s) "
                             f"and {sum(len(p) for p in probes.values())} probe(s)")
    if not any(True for p in probes.values() for _ in cross_view_pairs(walks, gallery, p)):
        raise EvalInputError(f"{where}: every probe shares its view with every gallery walk; the cross-view "
                             "protocol excludes identical-view pairs, so there is nothing to score")


def gait_section(cfg: Config, adapter: AnonymizingAdapter, split, source: str = "") -> dict:
    where = f"gait split {cfg.eval.gait.split!r} of the feature store"
    walks = walks_of(split.rows, where)
    check_walks(walks, where)  # again: the store may lack videos that failed to decode
    gallery, probes = gallery_probe_split(walks)
    out: dict = {"source": source, "protocol": "CASIA-B cross-view, identical views excluded",
                 "subjects": len({w.subject for w in walks}), "gallery": len(gallery),
                 "probes": {c: len(p) for c, p in probes.items()},
                 "views": sorted({w.view for w in walks}), "per_view": {}}
    for tag, f in views(adapter):
        v = video_vectors(split, f)
        means = []
        for cond, p in probes.items():
            top1, per_view, chance = cross_view_top1(v, walks, gallery, p)
            out[f"{cond}_top1_{tag}"] = top1
            out[f"{cond}_top1_chance"] = chance
            out["per_view"].setdefault(tag, {})[cond] = per_view
            means.append(top1)
        out[f"top1_{tag}"] = float(np.mean(means))
    out["top1_chance"] = float(np.mean([out[f"{c}_top1_chance"] for c in probes]))
    out["relative_change"] = relative_change(out["top1_raw"], out["top1_anonymized"])
    return out


class GaitTask(EvalTask):
    name = "gait"
    columns = tuple(TableColumn(f"CASIA-B gait top-1 {c.upper()}", "gait", f"{c}_top1", False, "privacy")
                    for c in CONDITIONS) + (TableColumn("CASIA-B gait top-1 mean", "gait", "top1", False, "privacy"),)

    def own_manifest(self, cfg: Config) -> str | None:
        return cfg.eval.gait.manifest

    def default_on(self, cfg: Config) -> bool:
        return cfg.eval.gait.manifest is not None

    def check(self, cfg: Config, path: str) -> None:
        if cfg.eval.gait.manifest is None:
            raise EvalInputError("no CASIA-B manifest: set eval.gait.manifest (python -m splavu_ray.data.builders "
                                 "casia_b ROOT OUT.parquet)")
        split = cfg.eval.gait.split
        _, rows = split_rows(path, split)
        where = f"gait manifest {path!r}, split {split!r}"
        if not rows:
            raise EvalInputError(f"{where}: no rows")
        check_walks(walks_of(rows, where), where)

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        return gait_section(cfg, adapter, store.load(cfg.eval.gait.split), store.meta.get("manifest", ""))
