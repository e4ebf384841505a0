"""Feature extraction: the frozen backbone over a manifest through Ray Data, into a feature store.

    python -m splavu_ray.features [--config FILE] [key=value ...] [--manifest M] [--out DIR]

Ray Data runs a pool of actors that each hold the backbone (one GPU each on a GPU cluster) and
decode their rows with a few threads (PyAV releases the GIL while decoding), so frames never pass
through the object store: only the small feature vectors come back. The driver groups results by
shard and writes each finished shard atomically; a re-run skips finished shards. Bad files are
dropped, counted and listed in ``rejects.jsonl`` beside the shards.

Per row: trimmed videos give ``num_eval_clips`` evenly spaced clips + ``num_static_frames`` static
clips; untrimmed videos (rows with segments or an anomaly label) give non-overlapping windows,
streamed with bounded memory; images give one static clip.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .config import Config, ConfigError, load_config
from .feature_store import FeatureStore, feature_row

PROTOCOL_VERSION = 1


def is_untrimmed(row: dict[str, Any], untrimmed_splits=()) -> bool:
    return bool(row.get("segments")) or row.get("anomaly") is True or row.get("split") in untrimmed_splits


def store_key(cfg: Config, manifest_path: str) -> str:
    """Identity of a feature store: manifest (path + size + mtime), backbone, clip protocol."""
    try:
        st = os.stat(manifest_path)
        stamp = f"{st.st_size}-{int(st.st_mtime)}"
    except OSError:
        stamp = "remote"
    d = cfg.data
    ident = {
        "manifest": str(manifest_path), "stamp": stamp, "backbone": cfg.backbone.model_dump(exclude={"batch_size"}),
        "clip_len": d.clip_len, "stride": d.frame_stride, "eval_clips": d.num_eval_clips,
        "static": d.num_static_frames, "protocol": PROTOCOL_VERSION,
    }
    ident["skip_splits"] = sorted(d.skip_feature_splits)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def default_store_root(cfg: Config, manifest_path: str) -> str:
    base = os.path.expanduser(cfg.data.cache_dir)
    if "://" in base:
        return f"{base.rstrip('/')}/features/{store_key(cfg, manifest_path)}"
    return str(Path(base) / "features" / store_key(cfg, manifest_path))


class Embedder:
    """Decode + transform + frozen backbone for one row at a time (lives inside a Ray actor)."""

    def __init__(self, cfg_dict: dict[str, Any], threads: int = 2):
        import torch

        from .backbone import build_backbone

        self.cfg = Config.model_validate(cfg_dict)
        self.device = "cuda" if self.cfg.scaling.use_gpu and torch.cuda.is_available() else "cpu"
        self.backbone = build_backbone(self.cfg.backbone, self.device, self.cfg.data.clip_len)
        self.size = self.backbone.image_size
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads))

    def _embed(self, clips_uint8: np.ndarray, static: bool = False) -> np.ndarray:
        """(C, T, H, W, 3) uint8 clips, or (K, H, W, 3) frames tiled into static clips -> (N, d) float32."""
        import torch

        from .data.transforms import eval_transform

        out, bs, t = [], self.cfg.backbone.batch_size, self.cfg.data.clip_len
        for i in range(0, len(clips_uint8), bs):
            chunk = torch.from_numpy(np.ascontiguousarray(clips_uint8[i:i + bs]))
            if static:  # transform each frame once, then tile it over the clip (a free view)
                x = eval_transform(chunk.unsqueeze(1), self.size).expand(-1, t, -1, -1, -1)
            else:
                x = eval_transform(chunk, self.size)
            out.append(self.backbone(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.backbone.embed_dim), np.float32)

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        from .data.decode import try_load_clips

        d = self.cfg.data
        short = int(round(self.size * 256 / 224))  # decode straight to the eval resize: bounded memory
        if row["media"] == "image":
            return try_load_clips(row, mode="static", clip_len=d.clip_len, static_k=1, size=short)
        if is_untrimmed(row, self.cfg.data.untrimmed_splits):
            return {"ok": True, "untrimmed": True}
        return try_load_clips(row, mode="eval", clip_len=d.clip_len, num_clips=d.num_eval_clips,
                              static_k=d.num_static_frames, size=short, stride=d.frame_stride)

    def _windows(self, row: dict[str, Any]) -> dict[str, Any]:
        from .data.decode import DecodeError, iter_windows

        feats, chunk, padded, info = [], [], 0, {}
        short = int(round(self.size * 256 / 224))
        try:
            for window, pad in iter_windows(row["uri"], self.cfg.data.clip_len, size=short, info=info):
                chunk.append(window)
                padded += pad
                if len(chunk) == self.cfg.backbone.batch_size:
                    feats.append(self._embed(np.stack(chunk)))
                    chunk = []
        except DecodeError as exc:
            return {"ok": False, "reason": exc.reason, "detail": exc.detail}
        if chunk:
            feats.append(self._embed(np.stack(chunk)))
        if not feats:
            return {"ok": False, "reason": "no_frames", "detail": "no window decoded"}
        return {"ok": True, "clips": np.concatenate(feats), "static": np.zeros((0, self.backbone.embed_dim)),
                "padded": padded > 0, "num_frames": info.get("num_frames"), "fps": info.get("fps"),
                "problem": info.get("problem")}

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        decoded = list(self.pool.map(self._decode, rows))
        out = []
        for row, dec in zip(rows, decoded):
            if dec.get("untrimmed"):
                dec = self._windows(row)
                res = dec
            elif dec["ok"]:
                clips = self._embed(dec["clips"]) if "clips" in dec else np.zeros((0, self.backbone.embed_dim))
                static = self._embed(dec["static"], static=True)
                res = {"ok": True, "clips": clips, "static": static, "padded": bool(dec.get("padded")),
                       "num_frames": dec.get("num_frames"), "fps": dec.get("fps"), "problem": dec.get("problem")}
            else:
                res = dec
            out.append({
                "key": row["_key"], "ok": bool(res["ok"]), "reason": res.get("reason") or res.get("problem"),
                "detail": res.get("detail"),
                "clips": np.asarray(res.get("clips", np.zeros(0)), np.float32).reshape(-1).tolist() if res["ok"] else [],
                "num_clips": int(len(res["clips"])) if res["ok"] else 0,
                "static": np.asarray(res.get("static", np.zeros(0)), np.float32).reshape(-1).tolist() if res["ok"] else [],
                "padded": bool(res.get("padded", False)), "dim": self.backbone.embed_dim,
                "num_frames": res.get("num_frames"), "fps": float(res["fps"]) if res.get("fps") else None,
            })
        return pa.Table.from_pylist(out, schema=_RESULT_SCHEMA)


_RESULT_SCHEMA = pa.schema([
    ("key", pa.int64()), ("ok", pa.bool_()), ("reason", pa.string()), ("detail", pa.string()),
    ("clips", pa.list_(pa.float32())), ("num_clips", pa.int32()), ("static", pa.list_(pa.float32())),
    ("padded", pa.bool_()), ("dim", pa.int32()), ("num_frames", pa.int64()), ("fps", pa.float64()),
])


def extract_features(cfg: Config, manifest_path: str, root: str | None = None, shard_size: int = 64,
                     progress: bool = True) -> FeatureStore:
    """Fill the feature store at ``root`` (default: under data.cache_dir) for ``manifest_path``."""
    from .data.manifest import read_manifest

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
    store.write_meta(meta)
    return store


def _backbone_meta(cfg: Config) -> dict:
    from .backbone import build_backbone, describe

    return describe(build_backbone(cfg.backbone, "cpu", cfg.data.clip_len))


def _rejects_path(root: str) -> str:
    return os.path.join(os.path.expanduser(root), "rejects.jsonl")


def _count_rejects(root: str) -> int:
    path = _rejects_path(root)
    if "://" in root or not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def _run_pipeline(cfg: Config, store: FeatureStore, rows: list[dict], todo: list[int], shard_size: int,
                  progress: bool) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=cfg.ray.address, ignore_reinit_error=True, log_to_driver=False)
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
    t0, n, bad = time.time(), 0, 0
    rejects = None
    if "://" not in store.root:
        os.makedirs(os.path.join(os.path.expanduser(store.root), "shards"), exist_ok=True)
        rejects = open(_rejects_path(store.root), "a")
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for res in batch.to_pylist():
                s, i = divmod(res["key"], 1_000_000)
                results[s][i] = res
                n += 1
                if not res["ok"]:
                    bad += 1
                    row = rows[s * shard_size + i]
                    if rejects:
                        rejects.write(json.dumps({"uri": row["uri"], "reason": res["reason"], "detail": res["detail"]}) + "\n")
                        rejects.flush()
                    print(f"[features] rejected {row['uri']}: {res['reason']} {res['detail'] or ''}", file=sys.stderr)
                if len(results[s]) == expected[s]:
                    _write_shard(store, s, rows[s * shard_size:(s + 1) * shard_size], results.pop(s))
            if progress:
                rate = n / max(time.time() - t0, 1e-9)
                print(f"[features] {n}/{len(items)} rows ({rate:.1f}/s), {bad} rejected", file=sys.stderr, flush=True)
    finally:
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
    try:
        store = FeatureStore.open(root)
        if store.complete:
            return store
    except Exception:
        pass
    return extract_features(cfg, manifest_path, root, progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo)")
    parser.add_argument("--manifest", help="manifest to extract (default: data.dataset, or the built-in data)")
    parser.add_argument("--out", help="feature store folder or URI (default: under data.cache_dir)")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("overrides", nargs="*", help="dotted key=value config overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .datasets import resolve_manifests

    manifest = args.manifest or resolve_manifests(cfg)["main"]
    store = extract_features(cfg, manifest, args.out, shard_size=args.shard_size)
    print(json.dumps({"store": store.root, "rows": store.meta["num_rows"], "rejects": store.meta["rejects"],
                      "dim": store.meta["dim"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
