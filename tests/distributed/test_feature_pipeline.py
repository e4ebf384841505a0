"""The feature pipeline as a user runs it (`python -m splavu_ray.features`), local and on S3, and the store's
identity: an edited manifest at the same path or URI gets another store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import videos
from s3 import client, environment, s3_server, use

from splavu_ray.config import load_config
from splavu_ray.data.feature_store import FeatureStore, default_store_root, store_key
from splavu_ray.data.manifest import write_manifest

FAST = ["backbone.source=random:tiny", "data.num_eval_clips=2", "data.num_static_frames=2",
        "data.decode_workers=1", "scaling.num_workers=1"]


def media(tmp: Path, n: int = 4) -> list[dict]:
    """``n`` good tiny videos and one corrupt one (rejected), all in the train split."""
    rows = []
    for i in range(n):
        p = videos.write_video(tmp / f"v{i}.mp4", num_frames=20, height=32, width=40)
        rows.append({"uri": str(p), "dataset": "t", "split": "train", "media": "video", "action": f"a{i % 2}"})
    videos.write_corrupt(tmp / "corrupt.mp4", src=tmp / "v0.mp4")
    rows.append({"uri": str(tmp / "corrupt.mp4"), "dataset": "t", "split": "train", "media": "video", "action": "a0"})
    return rows


def features_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "splavu_ray.features", *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "[features]" in proc.stderr  # progress lines
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        yield url


def test_an_edited_local_manifest_gets_another_store(tmp_path):
    cfg = load_config(None, [f"data.cache_dir={tmp_path / 'cache'}"])
    path = tmp_path / "m.parquet"
    rows = [{"uri": "/x.mp4", "dataset": "t", "split": "train", "media": "video"}]
    write_manifest(str(path), rows)
    first = store_key(cfg, str(path))
    assert store_key(cfg, str(path)) == first
    write_manifest(str(path), rows)  # same size, written again a second later: it may say something else
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert store_key(cfg, str(path)) != first
    write_manifest(str(path), rows + [{**rows[0], "uri": "/y.mp4"}])
    assert len({first, store_key(cfg, str(path))}) == 2
    assert default_store_root(cfg, str(path)).endswith(store_key(cfg, str(path)))


def test_an_overwritten_s3_manifest_gets_another_store_and_rejects_live_in_the_store(endpoint, monkeypatch, tmp_path):
    use(monkeypatch, endpoint)
    s3 = client(endpoint)
    s3.create_bucket(Bucket="keys")
    cfg = load_config(None, [])
    uri = "s3://keys/m.parquet"
    rows = [{"uri": "/x.mp4", "dataset": "t", "split": "train", "media": "video"}]
    write_manifest(str(tmp_path / "m.parquet"), rows)
    s3.upload_file(str(tmp_path / "m.parquet"), "keys", "m.parquet")
    first = store_key(cfg, uri)
    assert store_key(cfg, uri) == first
    write_manifest(str(tmp_path / "m.parquet"), rows + [{**rows[0], "uri": "/y.mp4"}])
    s3.upload_file(str(tmp_path / "m.parquet"), "keys", "m.parquet")
    assert store_key(cfg, uri) != first
    # per-shard rejects in an s3:// store, merged into rejects.jsonl
    store = FeatureStore("s3://keys/store")
    store.write_rejects(0, [{"uri": "/x.mp4", "reason": "corrupt", "detail": "bad"}])
    store.write_shard(0, [])
    assert store.merge_rejects() == [{"uri": "/x.mp4", "reason": "corrupt", "detail": "bad"}]
    body = client(endpoint).get_object(Bucket="keys", Key="store/rejects.jsonl")["Body"].read().decode()
    assert json.loads(body)["reason"] == "corrupt"


@pytest.mark.slow
def test_cli_local_store_rejects_and_a_new_store_for_an_edited_manifest(tmp_path):
    rows = media(tmp_path)
    manifest = tmp_path / "manifest.parquet"
    write_manifest(str(manifest), rows, actions=["a0", "a1"])
    cache = tmp_path / "cache"
    out = features_cli(["--manifest", str(manifest), "--shard-size", "2", f"data.cache_dir={cache}", *FAST])
    assert out["rows"] == 5 and out["rejects"] == 1 and out["dim"] == 192
    store = FeatureStore.open_complete(out["store"])
    assert store is not None and store.meta["num_shards"] == 3
    assert len(store.load("train")) == 4 and store.load("train").stacked_clips().shape == (4, 2, 192)
    rejects = store.rejects()
    assert [r["uri"] for r in rejects] == [str(tmp_path / "corrupt.mp4")] and rejects[0]["reason"] and rejects[0]["detail"]
    assert sorted(p.name for p in (Path(out["store"]) / "rejects").iterdir()) == [
        "part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [json.loads(x)["uri"] for x in open(Path(out["store"]) / "rejects.jsonl")] == [rejects[0]["uri"]]
    # the same manifest path, edited (one video fewer): another store, extracted afresh
    write_manifest(str(manifest), rows[1:], actions=["a0", "a1"])
    again = features_cli(["--manifest", str(manifest), "--shard-size", "2", f"data.cache_dir={cache}", *FAST])
    assert again["store"] != out["store"] and again["rows"] == 4 and again["rejects"] == 1
    assert sorted(os.listdir(cache / "features")) == sorted([Path(out["store"]).name, Path(again["store"]).name])


@pytest.mark.slow
def test_cli_s3_manifest_into_an_s3_store(endpoint, tmp_path, monkeypatch):
    env = environment(endpoint)
    s3 = client(endpoint)
    s3.create_bucket(Bucket="data")
    rows = media(tmp_path, n=3)
    local = tmp_path / "manifest.parquet"
    write_manifest(str(local), rows, actions=["a0", "a1"])
    s3.upload_file(str(local), "data", "manifests/m.parquet")
    out = features_cli(["--manifest", "s3://data/manifests/m.parquet", "--out", "s3://data/features/run1",
                        "--shard-size", "2", *FAST], env=env, cwd=tmp_path)
    assert out["store"] == "s3://data/features/run1" and out["rows"] == 4 and out["rejects"] == 1
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="features/run1/")["Contents"]
                  if not o["Key"].endswith("/"))  # pyarrow may leave a folder marker
    assert keys == ["features/run1/meta.json", "features/run1/rejects.jsonl",
                    "features/run1/rejects/part-00000.jsonl", "features/run1/rejects/part-00001.jsonl",
                    "features/run1/shards/part-00000.parquet", "features/run1/shards/part-00001.parquet"]
    meta = json.loads(s3.get_object(Bucket="data", Key="features/run1/meta.json")["Body"].read())
    assert meta["rejects"] == 1 and meta["num_rows"] == 4 and meta["num_shards"] == 2
    rejected = [json.loads(x) for x in s3.get_object(Bucket="data", Key="features/run1/rejects.jsonl")["Body"]
                .read().decode().splitlines()]
    assert [r["uri"] for r in rejected] == [str(tmp_path / "corrupt.mp4")]
    s3.download_file("data", "features/run1/shards/part-00000.parquet", str(tmp_path / "s0.parquet"))
    assert pq.read_table(tmp_path / "s0.parquet").num_rows == 2
    # the manifest overwritten at the same URI: the store of the old one is not the store of the new one
    use(monkeypatch, endpoint)
    cfg = load_config(None, FAST)
    before = store_key(cfg, "s3://data/manifests/m.parquet")
    assert meta["key"] == before
    write_manifest(str(local), rows[1:], actions=["a0", "a1"])
    s3.upload_file(str(local), "data", "manifests/m.parquet")
    assert store_key(cfg, "s3://data/manifests/m.parquet") != before
