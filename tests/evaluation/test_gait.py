"""The CASIA-B gait protocol: gallery nm-01..04, probes per condition, identical-view pairs excluded."""

import numpy as np
import pytest

from splavu_ray.config import load_config
from splavu_ray.data.builders.casia_b import Walk
from splavu_ray.data.feature_store import FeatureSplit
from splavu_ray.evaluation.gait import (
    GALLERY,
    GaitTask,
    check_walks,
    cross_view_pairs,
    cross_view_top1,
    gait_section,
    gallery_probe_split,
    walks_of,
)
from splavu_ray.evaluation.suite import report_table
from splavu_ray.evaluation.task import EvalInputError
from splavu_ray.models.adapter import AnonymizingAdapter

SEQUENCES = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")


def walk(subject, sequence, view):
    return Walk(subject, sequence[:2], sequence, view)


def test_gallery_is_nm_01_to_04_and_probes_go_by_condition():
    walks = [walk(s, q, v) for s in ("075", "076") for q in SEQUENCES for v in ("000", "090")]
    gallery, probes = gallery_probe_split(walks)
    assert {walks[i].sequence for i in gallery} == set(GALLERY) and len(gallery) == 2 * 4 * 2
    assert {c: sorted({walks[i].sequence for i in idx}) for c, idx in probes.items()} == {
        "nm": ["nm-05", "nm-06"], "bg": ["bg-01", "bg-02"], "cl": ["cl-01", "cl-02"]}
    assert all(len(idx) == 2 * 2 * 2 for idx in probes.values())
    # a condition without probes is left out rather than scored as 0
    _, probes = gallery_probe_split([w for w in walks if w.condition != "cl"])
    assert set(probes) == {"nm", "bg"}


def test_identical_view_pairs_are_excluded():
    walks = [walk("075", "nm-01", "000"), walk("076", "nm-01", "000"), walk("075", "nm-01", "090"),
             walk("076", "nm-01", "090"), walk("075", "nm-05", "000"), walk("076", "nm-05", "000"),
             walk("075", "nm-05", "090"), walk("076", "nm-05", "090")]
    gallery, probes = gallery_probe_split(walks)
    pairs = [(pv, gv) for pv, gv, _, _ in cross_view_pairs(walks, gallery, probes["nm"])]
    assert pairs == [("000", "090"), ("090", "000")]
    # Each probe equals its own gallery walk of the SAME view (a same-view match would be perfect), but
    # across views it lies nearer the other subject: the protocol must score 0, not 50.
    e = np.eye(4)
    vectors = np.stack([e[0], e[1], e[1] + 0.1 * e[2], e[0] + 0.1 * e[3],
                        e[0], e[1], e[1] + 0.1 * e[2], e[0] + 0.1 * e[3]])
    top1, per_view, chance = cross_view_top1(vectors, walks, gallery, probes["nm"])
    assert top1 == 0.0 and per_view == {"000": 0.0, "090": 0.0} and chance == 50.0
    # the same subjects with view-independent vectors are recognised across views
    same = np.stack([e[0], e[1]] * 4)
    assert cross_view_top1(same, walks, gallery, probes["nm"])[:2] == (100.0, {"000": 100.0, "090": 100.0})


def test_per_view_mean_is_over_gallery_views_then_probe_views():
    # probe view 000 against gallery views 018 (right) and 036 (wrong): 50; probe view 018: its own view
    # is excluded, 000 has no gallery walks, 036 is right: 100. Mean over the probe views: 75.
    walks = [walk("075", "nm-01", "018"), walk("076", "nm-01", "018"), walk("075", "nm-01", "036"),
             walk("076", "nm-01", "036"), walk("075", "cl-01", "000"), walk("075", "cl-01", "018")]
    e = np.eye(3)
    vectors = np.stack([e[0], e[1], e[1], e[0], e[0], e[1]])
    gallery, probes = gallery_probe_split(walks)
    top1, per_view, _ = cross_view_top1(vectors, walks, gallery, probes["cl"])
    assert per_view == {"000": 50.0, "018": 100.0} and top1 == 75.0


def test_inputs_that_cannot_serve_the_protocol_are_named():
    with pytest.raises(EvalInputError, match=r"1 of 2 rows are not CASIA-B walks.*'/x/v_clip.avi'"):
        walks_of([{"uri": "/x/075-nm-01-000.avi", "subject_id": "075"}, {"uri": "/x/v_clip.avi", "subject_id": "1"}],
                 "here")
    with pytest.raises(EvalInputError, match="needs gallery walks"):
        check_walks([walk("075", "nm-05", "000")], "here")
    with pytest.raises(EvalInputError, match="identical-view pairs"):
        check_walks([walk("075", "nm-01", "000"), walk("075", "bg-01", "000")], "here")
    with pytest.raises(EvalInputError, match="set eval.gait.manifest"):
        GaitTask().check(load_config(None, []), "unused.parquet")


def test_section_reports_each_condition_and_their_mean():
    rng = np.random.default_rng(0)
    dim, rows, clips = 16, [], []
    identity = {s: rng.normal(size=dim) for s in ("075", "076", "077")}
    for s in identity:
        for q in SEQUENCES:
            for v in ("000", "018"):
                rows.append({"uri": f"/casia/{s}-{q}-{v}.avi", "subject_id": s, "split": "test"})
                clips.append(identity[s] + 0.3 * rng.normal(size=(2, dim)))
    split = FeatureSplit(rows, clips, [c[:1] for c in clips], (), (), dim)
    cfg = load_config(None, [])
    res = {"gait": gait_section(cfg, AnonymizingAdapter(dim, "mlp", layers=1), split, "casia.parquet")}
    g = res["gait"]
    assert g["subjects"] == 3 and g["gallery"] == 3 * 4 * 2 and g["probes"] == {"nm": 12, "bg": 12, "cl": 12}
    for tag in ("raw", "anonymized"):
        assert g[f"top1_{tag}"] == pytest.approx(np.mean([g[f"{c}_top1_{tag}"] for c in ("nm", "bg", "cl")]))
        assert set(g["per_view"][tag]["cl"]) == {"000", "018"}
    assert g["nm_top1_raw"] == 100.0 and g["top1_chance"] == pytest.approx(100 / 3)
    header = report_table(res).splitlines()[0]
    for c in ("NM", "BG", "CL", "mean"):
        assert f"CASIA-B gait top-1 {c} (lower=better)" in header
