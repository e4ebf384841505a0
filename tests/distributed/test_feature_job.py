"""Feature extraction through Ray Data into the feature store (tiny random backbone)."""

import json
from pathlib import Path

import numpy as np
import pytest
import videos  # noqa: E402

from splavu_ray.config import load_config  # noqa: E402
from splavu_ray.data.feature_store import FeatureStore  # noqa: E402
from splavu_ray.data.manifest import write_manifest  # noqa: E402
from splavu_ray.distributed.feature_job import extract_features  # noqa: E402
from splavu_ray.features import main  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def small_manifest(tmp_path):
    rows = []
    for i in range(5):
        p = videos.write_video(tmp_path / f"v{i}.mp4", num_frames=20 + 8 * i, height=40, width=56)
        rows.append({"uri": str(p), "dataset": "t", "split": "train", "media": "video", "action": f"a{i % 2}",
                     "private_attributes": ["x"] if i % 2 else []})
    long = videos.write_video(tmp_path / "long.mp4", num_frames=70, height=40, width=56)
    rows.append({"uri": str(long), "dataset": "t", "split": "test", "media": "video",
                 "segments": [{"start": 0.5, "end": 1.5, "label": "a0"}]})
    img = videos.write_image(tmp_path / "img.png", height=40, width=56)
    rows.append({"uri": str(img), "dataset": "t", "split": "privacy_train", "media": "image",
                 "private_attributes": ["x"]})
    # data.skip_feature_splits (default ["pretrain"]): never embedded
    rows.append({"uri": rows[0]["uri"], "dataset": "t", "split": "pretrain", "media": "video", "action": "a0"})
    videos.write_empty(tmp_path / "empty.mp4")
    rows.append({"uri": str(tmp_path / "empty.mp4"), "dataset": "t", "split": "train", "media": "video"})
    rows.append({"uri": str(tmp_path / "missing.mp4"), "dataset": "t", "split": "train", "media": "video"})
    videos.write_corrupt(tmp_path / "corrupt.mp4", src=tmp_path / "v0.mp4")
    rows.append({"uri": str(tmp_path / "corrupt.mp4"), "dataset": "t", "split": "train", "media": "video"})
    # files wrong for their row: an image as a video, a video as an image, a video too short to be one
    rows.append({"uri": str(img), "dataset": "t", "split": "train", "media": "video", "action": "a0"})
    rows.append({"uri": rows[0]["uri"], "dataset": "t", "split": "privacy_train", "media": "image"})
    short = videos.write_video(tmp_path / "three.mp4", num_frames=3, height=40, width=56)
    rows.append({"uri": str(short), "dataset": "t", "split": "train", "media": "video", "action": "a1"})
    # shorter than a 16-frame clip but not than half of one: kept, padded with its last frame
    ten = videos.write_video(tmp_path / "ten.mp4", num_frames=10, height=40, width=56)
    rows.append({"uri": str(ten), "dataset": "t", "split": "train", "media": "video", "action": "a1"})
    path = tmp_path / "manifest.parquet"
    write_manifest(str(path), rows, actions=["a0", "a1"], attributes=["x"])
    return path


def test_extract_skips_bad_files_and_resumes(ray_session, small_manifest, tmp_path):
    cfg = load_config(None, ["backbone.source=random:tiny", "data.num_eval_clips=3", "data.num_static_frames=4",
                             f"data.cache_dir={tmp_path / 'cache'}", "data.decode_workers=1"])
    root = str(tmp_path / "store")
    store = extract_features(cfg, str(small_manifest), root, shard_size=4)
    assert store.complete and store.meta["num_shards"] == 4 and store.meta["dim"] == 192
    train = store.load("train")
    assert len(train) == 6  # 5 bad files dropped (3 unreadable, 2 wrong for their row), the padded one kept
    assert train.stacked_clips().shape == (6, 3, 192) and train.stacked_static().shape == (6, 4, 192)
    assert [r["uri"].endswith("ten.mp4") for r in train.rows] == [False] * 5 + [True]
    assert store.meta["padded"] == 1
    assert np.isfinite(train.stacked_clips()).all()
    long = store.load("test")
    assert long.clips[0].shape == (5, 192)  # ceil(70 / 16) windows
    img = store.load("privacy_train")
    assert img.clips[0].shape == (0, 192) and img.static[0].shape == (1, 192)
    assert "pretrain" not in set(store.table()["split"].to_pylist())
    rejects = [json.loads(line) for line in open(Path(root) / "rejects.jsonl")]
    assert {r["reason"] for r in rejects} >= {"missing", "empty", "wrong_media", "too_short"} and len(rejects) == 6
    assert all(r["detail"] for r in rejects)  # every reject says why
    # re-running skips finished shards: remove one, only it is recomputed
    shard = Path(root) / "shards" / "part-00001.parquet"
    before = {p.name: p.stat().st_mtime_ns for p in (Path(root) / "shards").iterdir()}
    shard.unlink()
    extract_features(cfg, str(small_manifest), root, shard_size=4)
    after = {p.name: p.stat().st_mtime_ns for p in (Path(root) / "shards").iterdir()}
    assert after["part-00000.parquet"] == before["part-00000.parquet"]
    assert after["part-00001.parquet"] != before["part-00001.parquet"]
    again = FeatureStore.open(root).load("train")
    np.testing.assert_allclose(again.stacked_clips(), train.stacked_clips(), atol=1e-5)


def test_cli(ray_session, small_manifest, tmp_path, capsys):
    rc = main(["--manifest", str(small_manifest), "--out", str(tmp_path / "cli"), "backbone.source=random:tiny",
               "data.decode_workers=1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"] == 14 and out["rejects"] == 6
    assert main(["backbone.sourze=x"]) == 2
