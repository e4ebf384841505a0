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
    return [{**r, "uri": r["uri"].replace(root, "<root>"), "person_mask": (r["person_mask"] or "").replace(root, "<root>")}
            for r in read_manifest(str(manifest_path)).rows()]


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
    for r in untrimmed:  # two events per video: an anomalous video swaps an action for its anomaly
        assert len(r["segments"]) + len(r["anomaly_segments"]) == 2 and len(r["anomaly_segments"]) == int(r["anomaly"])


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
    assert a.dtype == np.uint8 and a.shape == (round(S.UNTRIMMED_SECONDS * 8), 32, 32, 3) and np.array_equal(a, b)


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
    for n in (S.NUM_TRAIN_SUBJECTS, S.NUM_TEST_SUBJECTS):
        subjects = S.make_subjects(np.random.default_rng(0), n, "s")
        assert sum(s.female for s in subjects) == n // 2
        assert len({s.subject_id for s in subjects}) == n
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


# --------------------------------------------------------------------------- re-id on unseen subjects


def test_reid_test_subjects_are_not_the_subjects_f_a_trains_on():
    rows = [it.row for it in S.plan(SyntheticConfig())]  # the default sizes: labels only, no pixels
    subjects = {split: {r["subject_id"] for r in rows if r["split"] == split} for split in ("train", "val", "test")}
    assert subjects["test"] and not subjects["test"] & (subjects["train"] | subjects["val"])
    assert len(subjects["test"]) == S.NUM_TEST_SUBJECTS and len(subjects["train"]) == S.NUM_TRAIN_SUBJECTS
    per_subject = Counter(r["subject_id"] for r in rows if r["split"] == "test")
    assert min(per_subject.values()) >= 4  # a gallery and probes for every test subject
    genders = {r["subject_id"]: r["gender"] for r in rows if r["split"] == "test"}
    assert Counter(genders.values()) == Counter({"f": S.NUM_TEST_SUBJECTS // 2, "m": S.NUM_TEST_SUBJECTS // 2})


def test_untrimmed_test_splits_are_large_enough_by_default():
    counts = Counter(it.row["split"] for it in S.plan(SyntheticConfig()))
    assert counts["tad_test"] >= 96 and counts["anomaly_test"] >= 96


# --------------------------------------------------------------------------- the second domain


def _labels(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "num_frames"}


def test_urban_domain_plans_the_same_labels():
    studio, urban = S.plan(tiny()), S.plan(tiny(domain="urban"))
    assert [_labels(a.row) for a in studio] == [_labels(b.row) for b in urban]
    assert [a.path for a in studio] == [b.path for b in urban]
    for a, b in zip(studio, urban):  # only the trimmed clips' length differs (urban clips are longer)
        if a.row["split"] in ("pretrain", "train", "val", "test"):
            assert b.row["num_frames"] == round(1.5 * a.row["num_frames"])
        else:
            assert b.row["num_frames"] == a.row["num_frames"]


def test_urban_domain_looks_different_by_construction():
    """Another frame size, other scenes and another figure: the pixel statistics of the same items differ."""
    cfg_s, cfg_u = tiny(resolution=48), tiny(resolution=48, domain="urban")
    items = [it for it in S.plan(cfg_s) if it.row["split"] in ("train", "privacy_train")]
    studio = [S.render_item(it, cfg_s) for it in items]
    urban = [S.render_item(it, cfg_u) for it in S.plan(cfg_u) if it.row["split"] in ("train", "privacy_train")]
    assert {f.shape[1:3] for f in studio} == {(48, 48)} and {f.shape[1:3] for f in urban} == {(48, 64)}
    assert all(len(u) == (round(1.5 * len(s)) if len(s) > 1 else 1) for s, u in zip(studio, urban))
    # the same item, the same pose timing: the frames still share nothing pixel-wise
    for s, u in zip(studio, urban):
        assert np.abs(s[0].astype(float) - u[0, :, 8:56]).mean() > 20
    # the studio's scenes are bright sky/grass or pale walls; the urban street has dark asphalt along the bottom
    s_bottom = np.mean([f[:, -4:].mean() for f, it in zip(studio, items) if it.outdoor])
    u_bottom = np.mean([f[:, -4:].mean() for f, it in zip(urban, items) if it.outdoor])
    assert u_bottom < s_bottom - 20
    # the camera pans in urban videos: the background moves although nobody walks there
    def side_motion(frames: list[np.ndarray]) -> float:  # first vs last frame, at the left and right edges
        return float(np.mean([np.abs(f[-1].astype(float) - f[0])[:, np.r_[0:6, -6:0]].mean()
                              for f, it in zip(frames, items) if it.row["media"] == "video" and it.action != "walk"]))

    assert side_motion(urban) > side_motion(studio) + 2


def test_urban_dataset_decodes_at_its_own_size(tmp_path: Path):
    cfg = tiny(domain="urban", videos_per_split={"train": 2}, privacy_images={"test": 1}, untrimmed_videos={"test": 1})
    manifest = S.generate(cfg, tmp_path / "urban", workers=1)
    rows = read_manifest(str(manifest)).rows()
    assert {r["split"] for r in rows} == {"train", "privacy_test", "tad_test", "anomaly_test"}
    for r in rows:
        frames = decode(r["uri"])
        assert frames.shape == (r["num_frames"], 32, 42, 3), r["uri"]


def test_domain_is_part_of_the_cache_key_and_validated(tmp_path: Path):
    from pydantic import ValidationError

    from splavu_ray.config import ConfigError, load_config

    assert S.fingerprint(tiny()) != S.fingerprint(tiny(domain="urban"))
    assert S.dataset_dir(tiny(), tmp_path) != S.dataset_dir(tiny(domain="urban"), tmp_path)
    assert load_config(None, ["data.synthetic.domain=urban"]).data.synthetic.domain == "urban"
    with pytest.raises(ValidationError, match="studio"):
        SyntheticConfig(domain="cartoon")
    with pytest.raises(ConfigError, match="domain"):
        load_config(None, ["data.synthetic.domain=cartoon"])
