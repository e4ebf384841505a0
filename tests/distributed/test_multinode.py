"""Multi-node correctness on one machine: ray.cluster_utils.Cluster starts several raylets ("nodes").

Feature extraction (Ray Data actors) and training (2 Ray Train workers + DeepSpeed ZeRO-2, cached
mode) run first on ONE node, then with the work forced onto TWO nodes (two 1-CPU nodes for two 1-CPU
workers; the head has no CPU), with the feature store and Ray Train storage on a shared folder.
Both must give the same features and the same trained adapter.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import videos  # noqa: E402
from toy import make_toy_store  # noqa: E402

from splavu_ray.config import load_config  # noqa: E402
from splavu_ray.data.manifest import write_manifest  # noqa: E402
from splavu_ray.distributed.feature_job import extract_features  # noqa: E402
from splavu_ray.distributed.torch_trainer import export_from_result, fit  # noqa: E402
from splavu_ray.models.adapter import load_adapter  # noqa: E402
from splavu_ray.run_folder import RunFolder  # noqa: E402

pytestmark = pytest.mark.slow
# Same world size on both topologies, so the arithmetic is the same; only float reduction order
# could differ (gloo), hence a tolerance rather than equality.
ATOL = 1e-5


def tiny_manifest(folder: Path) -> Path:
    rows = []
    for i in range(4):
        p = videos.write_video(folder / f"v{i}.mp4", num_frames=18 + 4 * i, height=40, width=56)
        rows.append({"uri": str(p), "dataset": "t", "split": "train", "media": "video", "action": f"a{i % 2}",
                     "private_attributes": ["x"] if i % 2 else []})
    img = videos.write_image(folder / "img.png", height=40, width=56, value=60)
    rows.append({"uri": str(img), "dataset": "t", "split": "privacy_train", "media": "image", "private_attributes": ["x"]})
    path = folder / "manifest.parquet"
    write_manifest(str(path), rows, actions=["a0", "a1"], attributes=["x"])
    return path


def train_config(shared: Path, name: str):
    return load_config(None, [
        f"run_name={name}", f"output_dir={shared / 'out' / name}", f"ray.storage_path={shared / 'ray'}",
        "adapter.layers=1", "adapter.heads=4", "optim.batch_size=16", "optim.base_batch_size=16", "optim.lr=3e-3",
        "optim.epochs=2", "optim.head_epochs=1", "optim.warmup_epochs=0", "loss.w_lc=10",
        "deepspeed.zero_stage=2", "scaling.num_workers=2", "scaling.cpus_per_worker=1", "train.max_failures=0",
    ])


def run_both(shared: Path, manifest: Path, toy_root: str, tag: str):
    """Extract features and train with whatever nodes the connected cluster has."""
    cfg = load_config(None, ["backbone.source=random:tiny", "data.num_eval_clips=2", "data.num_static_frames=2",
                             "data.decode_workers=2", "data.decode_batch_size=1"])
    store = extract_features(cfg, str(manifest), str(shared / f"features-{tag}"), shard_size=2, progress=False)
    result = fit(train_config(shared, f"run-{tag}"), toy_root, ["train"], ["val"])
    assert result.error is None, result.error
    return store, export_from_result(result, RunFolder(shared / "export" / tag))


def test_two_nodes_match_one_node(tmp_path, monkeypatch):
    import secrets

    import ray
    from ray.cluster_utils import Cluster
    from ray_jobs import refresh_auth

    # Token auth on, with this test's own token, for the nodes and the driver alike.
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    refresh_auth()

    shared = tmp_path / "shared"  # every node of the cluster sees this folder, like NFS
    shared.mkdir()
    manifest = tiny_manifest(tmp_path)
    toy = make_toy_store(shared / "toy-store")

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}})
        one = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        store1, exp1 = run_both(shared, manifest, toy.root, "one-node")

        cluster.remove_node(one)
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert sorted(n["Resources"].get("CPU", 0) for n in alive) == [0, 1, 1]
        store2, exp2 = run_both(shared, manifest, toy.root, "two-nodes")
    finally:
        ray.shutdown()
        cluster.shutdown()
        monkeypatch.undo()
        refresh_auth()

    # Features: same rows, same vectors.
    for split in ("train", "privacy_train"):
        a, b = store1.load(split), store2.load(split)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.stacked_static(), b.stacked_static(), atol=ATOL)
        if split == "train":
            np.testing.assert_allclose(a.stacked_clips(), b.stacked_clips(), atol=ATOL)

    # Training: the same history and the same consolidated adapter.
    h1, h2 = exp1["state"]["history"], exp2["state"]["history"]
    assert [h["epoch"] for h in h1] == [h["epoch"] for h in h2] == [1, 2, 3]
    for m1, m2 in zip(h1, h2):
        for key in ("train_loss", "val_top1"):
            assert m1[key] == pytest.approx(m2[key], abs=1e-4), key
    a1, a2 = load_adapter(exp1["adapter"]), load_adapter(exp2["adapter"])
    for (k, v1), v2 in zip(a1.state_dict().items(), a2.state_dict().values()):
        torch.testing.assert_close(v1, v2, atol=ATOL, rtol=0, msg=k)
    x = torch.randn(3, 2, 32)
    assert not torch.allclose(a1(x), x), "training changed the adapter"
    # Checkpoints of both runs landed in the shared storage path.
    assert list((shared / "ray" / "run-one-node").glob("checkpoint_*"))
    assert list((shared / "ray" / "run-two-nodes").glob("checkpoint_*"))
