"""Runs whose outputs and data live in object storage (against an S3 server on 127.0.0.1):
an s3:// output_dir is staged locally and uploaded by RunFolder.publish, with checkpoints beside it;
data.cache_dir=s3://... puts the built-in data in the bucket with s3:// URIs, generated once."""

import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from s3 import client, s3_server, use  # noqa: E402

from splavu_ray.config import load_config  # noqa: E402
from splavu_ray.data.manifest import read_manifest  # noqa: E402
from splavu_ray.data.sources import resolve_manifests  # noqa: E402
from splavu_ray.run_folder import RunFolder  # noqa: E402

TINY_DATA = ["data.synthetic.resolution=32", "data.synthetic.num_frames=16", "data.synthetic.fps=8",
             "data.synthetic.videos_per_split={pretrain: 1, train: 4, val: 2, test: 2}",
             "data.synthetic.privacy_images={train: 2, test: 2}", "data.synthetic.untrimmed_videos={train: 1, test: 1}"]


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        client(url).create_bucket(Bucket="bucket")
        yield url


def keys(endpoint: str, prefix: str) -> list[str]:
    listed = client(endpoint).list_objects_v2(Bucket="bucket", Prefix=prefix).get("Contents", [])
    return sorted(o["Key"][len(prefix):].lstrip("/") for o in listed)


def test_an_s3_output_dir_is_staged_locally_and_published(endpoint, monkeypatch, tmp_path):
    use(monkeypatch, endpoint)
    monkeypatch.setenv("SPLAVU_STAGING", str(tmp_path / "staging"))
    cfg = load_config(None, ["output_dir=s3://bucket/runs/demo", "run_name=demo"])
    folder = RunFolder.of(cfg)
    assert folder.remote == "s3://bucket/runs/demo" and folder.root.is_relative_to(tmp_path / "staging")
    assert folder.checkpoints == "s3://bucket/runs/demo/ray"  # never a head-local folder
    assert RunFolder.of(load_config(None, ["output_dir=s3://bucket/runs/demo", "ray.storage_path=s3://bucket/ck"])
                        ).checkpoints == "s3://bucket/ck"
    folder.make().results_json.write_text("{}")
    folder.adapter().mkdir()
    (folder.adapter() / "adapter.json").write_text("{}")
    assert folder.publish() == "s3://bucket/runs/demo"
    assert keys(endpoint, "runs/demo") == ["best_adapter/adapter.json", "results.json"]
    local = RunFolder.of(load_config(None, [f"output_dir={tmp_path}/out"]))
    assert local.remote is None and local.publish() is None and local.root == tmp_path / "out"


def test_an_s3_sweep_output_dir_is_staged_and_its_trials_live_under_it(endpoint, monkeypatch, tmp_path):
    """A sweep's output_dir on s3://: its folder is staged locally, its trials default to <output_dir>/trials
    (ray.storage_path still wins), and a new machine fetches an earlier attempt's study from the bucket."""
    from splavu_ray.run_folder import download_folder, upload_folder
    from splavu_ray.search.spec import SweepSpec, trials_location

    use(monkeypatch, endpoint)
    monkeypatch.setenv("SPLAVU_STAGING", str(tmp_path / "staging"))
    space = {"loss.w_b": {"type": "uniform", "low": 0.1, "high": 1.0}}
    spec = SweepSpec(name="s", n_trials=1, space=space, output_dir="s3://bucket/sweeps/s/")
    assert spec.remote_output == "s3://bucket/sweeps/s" and spec.output_path.is_relative_to(tmp_path / "staging")
    assert spec.storage_url == f"sqlite:///{spec.output_path / 'optuna.db'}"
    assert trials_location(spec, {}) == "s3://bucket/sweeps/s/trials"
    assert trials_location(spec, {"ray": {"storage_path": "s3://bucket/ck"}}) == "s3://bucket/ck/s/trials"
    assert SweepSpec(name="s", n_trials=1, space=space, output_dir=str(tmp_path)).remote_output is None

    here = spec.output_path
    for rel in ("optuna.db", "summary.json", "tune/attempt-001/state.json", "trials/t0/record.json"):
        (here / rel).parent.mkdir(parents=True, exist_ok=True)
        (here / rel).write_text(rel)
    assert upload_folder(here, spec.remote_output, exclude=("tune", "trials")) == ["optuna.db", "summary.json"]
    upload_folder(here / "trials", f"{spec.remote_output}/trials")
    elsewhere = tmp_path / "another-head"
    assert download_folder(spec.remote_output, elsewhere, exclude=("trials",)) == ["optuna.db", "summary.json"]
    assert (elsewhere / "optuna.db").read_text() == "optuna.db"
    assert download_folder("s3://bucket/nothing-here", tmp_path / "empty") == []
    with pytest.raises(OSError, match="cannot download s3://no-such-bucket/x"):
        download_folder("s3://no-such-bucket/x", tmp_path / "none")


def test_builtin_data_under_an_s3_cache_has_s3_uris_and_is_made_once(endpoint, monkeypatch, tmp_path):
    use(monkeypatch, endpoint)
    monkeypatch.setenv("SPLAVU_LOCAL_CACHE", str(tmp_path / "local"))
    cfg = load_config(None, [*TINY_DATA, "data.cache_dir=s3://bucket/cache"])
    manifests = resolve_manifests(cfg)
    uri = manifests["main"]
    assert uri.startswith("s3://bucket/cache/synthetic-") and uri.endswith("/manifest.parquet")
    manifest = read_manifest(uri)
    uris = manifest.table["uri"].to_pylist()
    assert uris and all(u.startswith(uri.rsplit("/", 1)[0] + "/") for u in uris)
    fs, path = pafs.FileSystem.from_uri(uris[0])
    assert fs.get_file_info(path).size > 0  # the video itself is in the bucket
    assert not (Path.cwd() / "s3:").exists()  # never a local folder named 's3:'
    # Found in the bucket: a second call (any machine) generates nothing, even without the local copy.
    import shutil

    shutil.rmtree(tmp_path / "local")
    assert resolve_manifests(cfg)["main"] == uri and not (tmp_path / "local").exists()
