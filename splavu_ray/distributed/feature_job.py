"""The feature-extraction job: the frozen backbone over a manifest through Ray Data, into a feature store.

Ray Data runs a pool of actors that each hold the backbone (one GPU each on a GPU cluster) in an
:class:`~splavu_ray.models.embedder.Embedder` and decode their rows with a few threads (PyAV releases
the GIL while decoding), so frames never pass through the object store: only the small feature vectors
come back. The driver groups results by shard and writes each finished shard atomically; a re-run skips
finished shards. Bad files are dropped, counted and listed in ``rejects.jsonl`` beside the shards.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ..config import Config, ConfigError
from ..data.feature_store import (
    PROTOCOL_VERSION,
    REJECTS,
    FeatureStore,
    default_store_root,
    feature_row,
    is_untrimmed,
    store_key,
)
from ..data.manifest import read_manifest
from ..models.backbone import build_backbone, describe
from ..models.embedder import Embedder
from ..progress import Progress
from .session import connect


def extract_features(cfg: Config, manifest_path: str, root: str | None = None, shard_size: int = 64,
                     progress: bool = True) -> FeatureStore:
    """Fill the feature store at ``root`` (default: under data.cache_dir) for ``manifest_path``."""
    manifest = read_manifest(manifest_path)
    root = root or default_store_root(cfg, manifest_path)
    skip = set(cfg.data.skip_feature_splits)
    rows = [r for r in manifest.rows() if r.get("split") not in skip]
    if not rows:
        raise ConfigError(f"manifest {manifest_path!r} has no rows outside data.skip_feature_splits={sorted(skip)}")
    num_shards = max(1, -(-len(rows) // shard_size))
    store = FeatureStore(root)
    try:
        store = FeatureStore.open(root)
        if store.meta.get("key") not in (None, store_key(cfg, manifest_path)):
            raise ConfigError(f"feature store {root} was made for another manifest/backbone; choose another --out")
    except Exception as exc:  # not a store yet
        if isinstance(exc, ConfigError):
            raise
        store = FeatureStore(root)
    done = store.finished_shards()
    todo = [s for s in range(num_shards) if s not in done]
    if progress:
        print(f"[features] {root}: {len(rows)} rows, {num_shards} shards, {len(todo)} to do", file=sys.stderr, flush=True)
    if todo:
        _run_pipeline(cfg, store, rows, todo, shard_size, progress)
    # Meta last: a store is complete only when its meta names as many shards as are finished.
    meta = {
        "key": store_key(cfg, manifest_path), "manifest": str(manifest_path), "num_rows": len(rows),
        "num_shards": num_shards, "actions": list(manifest.actions), "attributes": list(manifest.attributes),
        "backbone": store.meta.get("backbone") or _backbone_meta(cfg), "clip_len": cfg.data.clip_len,
        "num_eval_clips": cfg.data.num_eval_clips, "num_static_frames": cfg.data.num_static_frames,
        "frame_stride": cfg.data.frame_stride, "protocol": PROTOCOL_VERSION,
    }
    meta["dim"] = meta["backbone"]["embed_dim"]
    meta["rejects"] = _count_rejects(root)
    # trimmed videos shorter than a clip (but not than data.min_frames): kept, their last frame repeated
    cols = store.columns("padded", "segments", "anomaly", "split").to_pylist()
    meta["padded"] = sum(1 for r in cols if r["padded"] and not is_untrimmed(r, cfg.data.untrimmed_splits))
    if meta["padded"] and progress:
        print(f"[features] {meta['padded']} video(s) shorter than a clip were padded with their last frame",
              file=sys.stderr, flush=True)
    store.write_meta(meta)
    return store


def _backbone_meta(cfg: Config) -> dict:
    return describe(build_backbone(cfg.backbone, "cpu", cfg.data.clip_len))


def _rejects_path(root: str) -> str:
    return os.path.join(os.path.expanduser(root), REJECTS)


def _count_rejects(root: str) -> int:
    path = _rejects_path(root)
    if "://" in root or not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def _run_pipeline(cfg: Config, store: FeatureStore, rows: list[dict], todo: list[int], shard_size: int,
                  progress: bool) -> None:
    import ray

    connect(cfg)
    items, expected = [], {}
    for s in todo:
        chunk = rows[s * shard_size:(s + 1) * shard_size]
        expected[s] = len(chunk)
        for i, r in enumerate(chunk):
            items.append({**{k: v for k, v in r.items() if k in ("uri", "split", "media", "segments", "anomaly", "num_frames", "fps")},
                          "_key": s * 1_000_000 + i})
    workers = cfg.data.decode_workers
    gpu = 1 if cfg.scaling.use_gpu else 0
    threads = max(1, int(cfg.scaling.cpus_per_worker)) if gpu else 1
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items) // cfg.data.decode_batch_size))
    ds = ds.map_batches(
        Embedder, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "threads": threads},
        batch_size=cfg.data.decode_batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_gpus=gpu, num_cpus=1 if not gpu else threads,
    )
    results: dict[int, dict[int, dict]] = {s: {} for s in todo}
    bad = 0
    rejects = None
    if "://" not in store.root:
        os.makedirs(os.path.join(os.path.expanduser(store.root), "shards"), exist_ok=True)
        rejects = open(_rejects_path(store.root), "a")
    bar = Progress(len(items), "features", unit="row", enabled=progress)
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for res in batch.to_pylist():
                s, i = divmod(res["key"], 1_000_000)
                results[s][i] = res
                if not res["ok"]:
                    bad += 1
                    row = rows[s * shard_size + i]
                    if rejects:
                        rejects.write(json.dumps({"uri": row["uri"], "reason": res["reason"], "detail": res["detail"]}) + "\n")
                        rejects.flush()
                    print(f"[features] rejected {row['uri']}: {res['reason']} {res['detail'] or ''}", file=sys.stderr)
                if len(results[s]) == expected[s]:
                    _write_shard(store, s, rows[s * shard_size:(s + 1) * shard_size], results.pop(s))
            bar.update(batch.num_rows, rejected=bad)
    finally:
        bar.close()
        if rejects:
            rejects.close()


def _write_shard(store: FeatureStore, index: int, rows: list[dict], results: dict[int, dict]) -> None:
    out = []
    for i, row in enumerate(rows):
        res = results[i]
        if not res["ok"]:
            continue  # listed in rejects.jsonl
        dim = res["dim"]
        full = {**row, "num_frames": row.get("num_frames") or res.get("num_frames"), "fps": row.get("fps") or res.get("fps")}
        out.append(feature_row(full, np.asarray(res["clips"], np.float32).reshape(-1, dim),
                               np.asarray(res["static"], np.float32).reshape(-1, dim), res["padded"]))
    store.write_shard(index, out)


def ensure_features(cfg: Config, manifest_path: str, progress: bool = True) -> FeatureStore:
    """The complete feature store for (manifest, backbone, protocol), extracting what is missing."""
    root = default_store_root(cfg, manifest_path)
    return FeatureStore.open_complete(root) or extract_features(cfg, manifest_path, root, progress=progress)


def ensure_stores(cfg: Config, paths: list[str]) -> dict[str, FeatureStore]:
    """The complete feature store of each manifest (``paths``), extracting what is missing (Ray only then)."""
    return {path: ensure_features(cfg, path) for path in dict.fromkeys(paths)}
