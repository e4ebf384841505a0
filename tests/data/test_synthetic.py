"""The built-in synthetic dataset: labels, media, determinism, bias control and the generate-once cache."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from splavu_ray.config import SyntheticConfig
from splavu_ray.data import synthetic as S
from splavu_ray.data.manifest import read_manifest

TINY = dict(
    resolution=32, num_frames=16, fps=8,
    videos_per_split={"pretrain": 3, "train": 4, "val": 2, "test": 3},
    privacy_images={"train": 3, "test": 2},
    untrimmed_videos={"train": 2, "test": 1},
)
SPLITS = {
    "pretrain", "train", "val", "test", "privacy_train", "privacy_test",
    "tad_train", "tad_test", "anomaly_train", "anomaly_test",
}


def tiny(**kw) -> SyntheticConfig:
    return SyntheticConfig(**{**TINY, **kw})


def decode(uri: str) -> np.ndarray:
    with av.open(uri) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def media(manifest_path: Path) -> dict[str, np.ndarray]:
    """Relative path -> decoded pixels of every file of a dataset."""
    root = manifest_path.parent
    return {str(Path(r["uri"]).relative_to(root)): decode(r["uri"]) for r in read_manifest(str(manifest_path)).rows()}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def label_rows(manifest_path: Path) -> list[dict]:
    root = str(manifest_path.parent)
    return [{**r, "uri": r["uri"].replace(root, "<root>")} for r in read_manifest(str(manifest_path)).rows()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return S.generate(tiny(), tmp_path_factory.mktemp("syn") / "data", workers=1)


def test_manifest_contents(dataset: Path):
    m = read_manifest(str(dataset))
    assert m.actions == S.ACTIONS and len(m.actions) >= 8
    assert m.attributes == S.ATTRIBUTES
    rows = m.rows()
    counts = Counter(r["split"] for r in rows)
    assert set(counts) == SPLITS
    assert counts["train"] == 4 and counts["privacy_train"] == 3 and counts["anomaly_train"] == 2
    for r in rows:
        assert r["dataset"] == "synthetic" and Path(r["uri"]).is_absolute() and Path(r["uri"]).is_file()
        assert set(r["private_attributes"]) <= set(S.ATTRIBUTES)
        assert r["gender"] in ("f", "m") and (r["gender"] == "f") == ("gender_f" in r["private_attributes"])
        duration = r["num_frames"] / (r["fps"] or 1)
        for seg in r["segments"] + r["anomaly_segments"]:
            assert 0 <= seg["start"] < seg["end"] <= duration
    trimmed = [r for r in rows if r["split"] in ("pretrain", "train", "val", "test")]
    assert all(r["action"] in S.ACTIONS and r["action_id"] == S.ACTIONS.index(r["action"]) for r in trimmed)
    assert all(r["subject_id"] and r["num_frames"] == 16 and not r["segments"] for r in trimmed)
    pre = {r["subject_id"] for r in trimmed if r["split"] == "pretrain"}
    rest = {r["subject_id"] for r in trimmed if r["split"] != "pretrain"}
    assert pre and rest and not pre & rest  # the demo encoder never sees an evaluation subject
    images = [r for r in rows if r["media"] == "image"]
    assert {r["split"] for r in images} == {"privacy_train", "privacy_test"}
    assert all(r["action"] is None and r["action_id"] == -1 and r["uri"].endswith(".png") for r in images)
    untrimmed = [r for r in rows if r["split"].startswith(("tad_", "anomaly_"))]
    assert all(r["num_frames"] == round(S.UNTRIMMED_SECONDS * 8) for r in untrimmed)
    for r in untrimmed:
        segs = sorted(r["segments"] + r["anomaly_segments"], key=lambda s: s["start"])
        assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))  # events never overlap
        assert all(s["label"] in S.ACTIONS for s in r["segments"])
        assert r["anomaly"] == bool(r["anomaly_segments"])
    assert all(r["segments"] and not r["anomaly"] for r in untrimmed if r["split"].startswith("tad_"))
    assert {r["anomaly"] for r in untrimmed if r["split"] == "anomaly_train"} == {True, False}


def test_media_decode(dataset: Path):
    for r in read_manifest(str(dataset)).rows():
        frames = decode(r["uri"])
        assert frames.shape == (r["num_frames"], 32, 32, 3), r["uri"]
        if r["media"] == "video":  # something moves (the action lives in the motion)
            assert np.abs(frames[1:].astype(int) - frames[:-1]).mean() > 0.5


def test_deterministic_by_seed_and_independent_of_workers(dataset: Path, tmp_path: Path):
    again = S.generate(tiny(), tmp_path / "again", workers=2)
    assert label_rows(again) == label_rows(dataset)
    # Same content per file. PNGs are lossless: exact. Videos: the frames are (test_render_is_pure), but
    # x264 is not always byte-repeatable: in a long-lived process (the full suite, ~1 run in 5) the first
    # files it encodes sometimes come out at another rate-control quality with the same options and
    # frames, 38-40 dB from the usual encode. Another item's video is ~14 dB away.
    a, b = media(again), media(dataset)
    assert a.keys() == b.keys()
    for path in a:
        if path.endswith(".png"):
            assert np.array_equal(a[path], b[path]), path
        else:
            assert a[path].shape == b[path].shape and psnr(a[path], b[path]) > 30, path
    other = S.plan(tiny(seed=1))
    assert [it.row for it in other] != [it.row for it in S.plan(tiny())]


def test_render_is_pure():
    item = next(it for it in S.plan(tiny()) if it.row["split"] == "anomaly_train" and it.row["anomaly"])
    a, b = S.render_item(item, tiny()), S.render_item(item, tiny())
    assert a.dtype == np.uint8 and a.shape == (96, 32, 32, 3) and np.array_equal(a, b)


def _group_fraction(rows: list[dict]) -> dict[int, float]:
    """Per action: fraction of videos whose subject is in the action's preferred group."""
    out = {}
    for a in range(len(S.ACTIONS)):
        genders = [r["gender"] for r in rows if r["action_id"] == a]
        preferred = "f" if a % 2 == 0 else "m"
        out[a] = sum(g == preferred for g in genders) / len(genders)
    return out


def _chi2(rows: list[dict], attribute: str) -> float:
    """Chi-square statistic of the (attribute present, action) contingency table."""
    table = np.zeros((2, len(S.ACTIONS)))
    for r in rows:
        table[int(attribute in r["private_attributes"]), r["action_id"]] += 1
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_appearance_independent_of_action_without_bias():
    cfg = tiny(videos_per_split={"train": 600, "test": 400}, privacy_images={}, untrimmed_videos={})
    rows = [it.row for it in S.plan(cfg)]
    for split in ("train", "test"):
        part = [r for r in rows if r["split"] == split]
        assert Counter(r["action_id"] for r in part) == Counter({a: len(part) // 10 for a in range(10)})
        assert all(abs(f - 0.5) <= 0.05 for f in _group_fraction(part).values())  # balanced per action
        for attribute in ("skin_dark", "face_visible", "scene_outdoor", "clothing_red"):
            assert _chi2(part, attribute) < 27.88, attribute  # chi2(9 dof) 99.9% quantile


def test_bias_ties_action_to_gender_on_train_only():
    cfg = tiny(videos_per_split={"train": 600, "val": 200, "test": 400}, privacy_images={}, untrimmed_videos={}, bias=0.95)
    rows = [it.row for it in S.plan(cfg)]
    for split in ("train", "val"):
        fractions = _group_fraction([r for r in rows if r["split"] == split]).values()
        assert all(f >= 0.95 for f in fractions), (split, fractions)
    test = [r for r in rows if r["split"] == "test"]
    assert all(abs(f - 0.5) <= 0.05 for f in _group_fraction(test).values())
    assert abs(Counter(r["gender"] for r in rows if r["split"] == "train")["f"] / 600 - 0.5) < 0.05
    assert _chi2([r for r in rows if r["split"] == "train"], "gender_f") > 100


def test_subjects_balanced_and_attributes_near_target_prevalence():
    subjects = S.make_subjects(np.random.default_rng(0), S.NUM_SUBJECTS, "s")
    assert sum(s.female for s in subjects) == S.NUM_SUBJECTS // 2
    assert len({s.subject_id for s in subjects}) == S.NUM_SUBJECTS
    rows = [it.row for it in S.plan(tiny(privacy_images={"train": 400}, videos_per_split={}, untrimmed_videos={}))]
    for attribute in S.ATTRIBUTES:
        prevalence = sum(attribute in r["private_attributes"] for r in rows) / len(rows)
        assert 0.25 <= prevalence <= 0.7, (attribute, prevalence)


def test_odd_resolution_is_refused():
    with pytest.raises(ValueError, match="even"):
        S.plan(tiny(resolution=33))


def test_ensure_synthetic_generates_once(tmp_path: Path, monkeypatch):
    cfg = tiny(videos_per_split={"train": 2}, privacy_images={"test": 1}, untrimmed_videos={"test": 1})
    final = S.dataset_dir(cfg, tmp_path)
    stale = tmp_path / f".{final.name}.tmp-killed"  # what an interrupted run leaves behind
    stale.mkdir(parents=True)
    (stale / "manifest.parquet").write_text("half a dataset")
    calls = []
    real = S.generate
    monkeypatch.setattr(S, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = []
    threads = [threading.Thread(target=lambda: results.append(S.ensure_synthetic(cfg, tmp_path, workers=1))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [final / "manifest.parquet"] * 2  # concurrent callers: one build
    assert not stale.exists() and not list(tmp_path.glob(".*.tmp-*"))
    rows = read_manifest(str(results[0])).rows()
    assert all(Path(r["uri"]).is_file() and Path(r["uri"]).parent.parent.parent == final for r in rows)
    monkeypatch.setattr(S, "generate", lambda *a, **k: pytest.fail("regenerated a cached dataset"))
    assert S.ensure_synthetic(cfg, tmp_path) == final / "manifest.parquet"
    assert S.dataset_dir(tiny(seed=3), tmp_path) != final  # another config, another folder
