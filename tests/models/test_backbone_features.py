"""I3D and V-JEPA v1 fill the feature store through the same path as the other backbones.

The fast test runs the Ray Data actor's body (``Embedder``) in-process and writes the shard the way the
feature job does; the slow one runs ``python -m splavu_ray.features`` (Ray) on the same tiny videos.
"""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
import videos

from splavu_ray.config import load_config
from splavu_ray.data.decode import try_load_clips
from splavu_ray.data.feature_store import FeatureStore, default_store_root, store_key
from splavu_ray.data.manifest import read_manifest, write_manifest
from splavu_ray.data.transforms import eval_transform
from splavu_ray.distributed.feature_job import _write_shard
from splavu_ray.models.backbone import build_backbone, describe, save_encoder
from splavu_ray.models.embedder import Embedder

DIMS = {"i3d": 128, "vjepa1": 96}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Three short videos and an image; the tiny V-JEPA v1 saved as converted weights (a local folder)."""
    tmp = tmp_path_factory.mktemp("bbfeat")
    rows = [{"uri": str(videos.write_video(tmp / f"v{i}.mp4", num_frames=20 + 6 * i, height=40, width=56)),
             "dataset": "t", "split": "train", "media": "video", "action": f"a{i % 2}",
             "private_attributes": ["x"] if i % 2 else []} for i in range(3)]
    rows.append({"uri": str(videos.write_image(tmp / "img.png", height=40, width=56)), "dataset": "t",
                 "split": "privacy_train", "media": "image", "private_attributes": ["x"]})
    path = tmp / "manifest.parquet"
    write_manifest(str(path), rows, actions=["a0", "a1"], attributes=["x"])
    cfg = load_config(None, ["backbone.kind=vjepa1", "backbone.source=random:tiny"])
    weights = save_encoder(build_backbone(cfg.backbone).encoder, tmp / "vjepa1-tiny")
    sources = {"i3d": "random:tiny", "vjepa1": str(weights)}
    return tmp, path, sources


def overrides(kind, sources, tmp):
    side = ["backbone.image_size=32"] if kind == "i3d" else []  # I3D's 7x7x7 stem is the slow part on CPU
    return [f"backbone.kind={kind}", f"backbone.source={sources[kind]}", "data.num_eval_clips=2",
            "data.num_static_frames=2", f"data.cache_dir={tmp / 'cache'}", "data.decode_workers=1", *side]


@pytest.mark.parametrize("kind", ["i3d", "vjepa1"])
def test_embedder_fills_the_store(media, kind):
    tmp, manifest, sources = media
    cfg = load_config(None, overrides(kind, sources, tmp))
    rows = read_manifest(str(manifest)).rows()
    embed = Embedder(cfg.to_dict(), threads=1)
    res = embed(pa.Table.from_pylist([{**r, "_key": i} for i, r in enumerate(rows)])).to_pylist()
    assert all(r["ok"] for r in res) and {r["dim"] for r in res} == {DIMS[kind]}
    root = default_store_root(cfg, str(manifest))
    store = FeatureStore(root)
    _write_shard(store, 0, rows, dict(enumerate(res)))
    store.write_meta({"key": store_key(cfg, str(manifest)), "num_shards": 1, "num_rows": len(rows),
                      "dim": DIMS[kind], "actions": ["a0", "a1"], "attributes": ["x"],
                      "backbone": describe(embed.backbone)})
    done = FeatureStore.open_complete(root)
    assert done is not None and done.meta["backbone"]["kind"] == kind
    train = done.load("train")
    assert train.stacked_clips().shape == (3, 2, DIMS[kind]) and train.stacked_static().shape == (3, 2, DIMS[kind])
    assert np.isfinite(train.stacked_clips()).all()
    img = done.load("privacy_train")
    assert img.clips[0].shape == (0, DIMS[kind]) and img.static[0].shape == (1, DIMS[kind])
    # the features are the backbone's own: a clip of the store equals a direct forward pass
    dec = try_load_clips(rows[0], mode="eval", clip_len=16, num_clips=2, static_k=2,
                         size=round(embed.size * 256 / 224), stride=1, min_frames=embed.min_frames)
    frames = torch.from_numpy(np.ascontiguousarray(dec["clips"]))
    direct = embed.backbone(eval_transform(frames, embed.size)).numpy()
    np.testing.assert_allclose(train.clips[0], direct, rtol=1e-4, atol=1e-4)


def test_store_identity_names_the_backbone(media):
    tmp, manifest, sources = media
    keys = {kind: store_key(load_config(None, overrides(kind, sources, tmp)), str(manifest)) for kind in DIMS}
    base = store_key(load_config(None, [f"data.cache_dir={tmp / 'cache'}"]), str(manifest))
    assert len({*keys.values(), base}) == 3  # i3d, vjepa1 and the default V-JEPA 2 never share a store


@pytest.mark.slow
def test_features_cli_with_ray(ray_session, media, capsys):
    from splavu_ray.features import main

    tmp, manifest, sources = media
    for kind, dim in DIMS.items():
        out = tmp / f"store-{kind}"
        assert main(["--manifest", str(manifest), "--out", str(out), *overrides(kind, sources, tmp)]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert printed["rows"] == 4 and printed["rejects"] == 0 and printed["dim"] == dim
        store = FeatureStore.open_complete(str(out))
        assert store.meta["backbone"]["kind"] == kind
        assert store.load("train").stacked_clips().shape == (3, 2, dim)
