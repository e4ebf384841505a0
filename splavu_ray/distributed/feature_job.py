"""The feature-extraction job: a Ray Data pipeline from a manifest to a feature store.

Stages (one streaming Ray Data execution; frames never come back to the driver, nor do features)::

    read      ray.data.read_parquet(manifest)   the manifest (local path or s3:// / gs:// URI), by one read
                                                task; the driver validated it first
                                                (data.manifest.read_manifest), so a bad one fails before work
    select    map_batches(_Select) actor        one actor (no CPU reserved) taking the read blocks in order:
                                                counts rows (-> manifest positions), conforms them to the
                                                manifest schema, drops data.skip_feature_splits and the rows
                                                of finished shards, tags each row with its key (position
                                                among the embedded rows; key // shard size = its shard);
              repartition                       blocks of data.decode_batch_size rows (decode parallelism)
    decode    map_batches(_decode) tasks        num_cpus=1, at most data.decode_workers at a time: PyAV
                                                decodes each row into uint8 parts (data.frames.RowDecoder:
                                                clips + static frames, or an untrimmed video's windows a
                                                few at a time), as Arrow tensor columns; bad files become
                                                failed parts with their reason
    embed     map_batches(_Embed) actors        ActorPoolStrategy(1..scaling.num_workers), num_gpus=1 each
                                                when scaling.use_gpu, else scaling.cpus_per_worker CPUs:
                                                models.embedder.FeatureEmbedder turns frames into features
                                                (list<float32> columns), so an accelerator never waits on
                                                a decoder
    write     map_batches(_ShardWriter) actor   one actor (no CPU reserved) gathers the parts of each row
                                                and the rows of each shard; when a shard is whole it
                                                writes its rejects (rejects/part-NNNNN.jsonl) and then the
                                                shard (shards/part-NNNNN.parquet, atomically) straight to
                                                the store's URI, and emits one small row of counts

The driver only drives: it reads the counts for the progress bar, then writes the merged
``rejects.jsonl`` and ``meta.json`` (written last: a store is complete when its meta names as many
shards as are finished). A re-run skips finished shards. The store's identity (data.feature_store.store_key)
includes the manifest's size and modification time, so an edited manifest gets a new store.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config, ConfigError
from ..data.feature_store import (
    PROTOCOL_VERSION,
    FeatureStore,
    default_store_root,
    feature_row,
    is_untrimmed,
    store_key,
)
from ..data.frames import RowDecoder
from ..data.manifest import SCHEMA as MANIFEST_SCHEMA
from ..data.manifest import read_manifest
from ..data.person_masks import PersonMaskError, require_masks
from ..data.pixel_ops import NEEDS_MASK
from ..models.backbone import build_backbone, describe
from ..models.embedder import FeatureEmbedder, float_lists, join_parts
from ..progress import Progress
from .session import connect

PART_FIELDS = ("part", "last", "ok", "reason", "detail", "padded", "num_frames", "fps", "problem")
SHOWN_REJECTS = 20  # reject lines printed by the driver at the end (all are in the store)


def extract_features(cfg: Config, manifest_path: str, root: str | None = None, shard_size: int = 64,
                     progress: bool = True) -> FeatureStore:
    """Fill the feature store at ``root`` (default: under data.cache_dir) for ``manifest_path``."""
    manifest = read_manifest(manifest_path)
    root = root or default_store_root(cfg, manifest_path)
    skip = sorted(set(cfg.data.skip_feature_splits))
    splits = np.asarray(manifest.table["split"].to_pylist(), dtype=object)
    kept = ~np.isin(splits, skip) if skip else np.ones(len(splits), bool)
    num_rows = int(kept.sum())
    if not num_rows:
        raise ConfigError(f"manifest {manifest_path!r} has no rows outside data.skip_feature_splits={skip}")
    if cfg.data.pixel.transform in NEEDS_MASK:  # blacken: every row needs its person mask, checked before Ray
        try:
            masks = manifest.table.select(["uri", "person_mask"]).to_pylist()
            require_masks((r for r, k in zip(masks, kept) if k), f"manifest {manifest_path!r}")
        except PersonMaskError as exc:
            raise ConfigError(str(exc)) from None
    num_shards = max(1, -(-num_rows // shard_size))
    key = store_key(cfg, manifest_path)
    try:
        store = FeatureStore.open(root)
        if store.meta.get("key") not in (None, key):
            raise ConfigError(f"feature store {root} was made for another manifest/backbone; choose another --out")
    except Exception as exc:  # not a store yet
        if isinstance(exc, ConfigError):
            raise
        store = FeatureStore(root)
    done = store.finished_shards()
    todo = [s for s in range(num_shards) if s not in done]
    if progress:
        print(f"[features] {root}: {num_rows} rows, {num_shards} shards, {len(todo)} to do", file=sys.stderr, flush=True)
    backbone = store.meta.get("backbone") or _backbone_meta(cfg)
    if todo:
        keys = np.where(kept, np.cumsum(kept) - 1, -1).astype(np.int64)  # manifest position -> key
        _run_pipeline(cfg, str(manifest_path), keys, store, todo, num_rows, shard_size,
                      backbone, progress)
    rejects = store.merge_rejects()
    if progress and rejects:
        for r in rejects[:SHOWN_REJECTS]:
            print(f"[features] rejected {r['uri']}: {r['reason']} {r.get('detail') or ''}", file=sys.stderr)
        more = len(rejects) - SHOWN_REJECTS
        print(f"[features] {len(rejects)} row(s) rejected{f' ({more} more not shown)' if more > 0 else ''}; "
              f"all listed in {root}/rejects.jsonl", file=sys.stderr, flush=True)
    # Meta last: a store is complete only when its meta names as many shards as are finished.
    meta = {
        "key": key, "manifest": str(manifest_path), "num_rows": num_rows,
        "num_shards": num_shards, "actions": list(manifest.actions), "attributes": list(manifest.attributes),
        "backbone": backbone, "clip_len": cfg.data.clip_len,
        "num_eval_clips": cfg.data.num_eval_clips, "num_static_frames": cfg.data.num_static_frames,
        "frame_stride": cfg.data.frame_stride, "protocol": PROTOCOL_VERSION,
    }
    meta["dim"] = meta["backbone"]["embed_dim"]
    meta["rejects"] = len(rejects)
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


def _accelerator(cfg: Config) -> dict:
    """Ray remote args that pin an embedding actor to ``scaling.accelerator_type``'s GPU model (if set)."""
    return {"accelerator_type": cfg.scaling.accelerator_type} if cfg.scaling.accelerator_type else {}


def _run_pipeline(cfg: Config, manifest_path: str, keys: np.ndarray, store: FeatureStore,
                  todo: list[int], num_rows: int, shard_size: int, backbone: dict, progress: bool) -> None:
    import ray

    connect(cfg)
    expected = {s: min(shard_size, num_rows - s * shard_size) for s in todo}
    total = sum(expected.values())
    cfg_dict = cfg.to_dict()
    gpu = cfg.scaling.use_gpu
    threads = max(1, int(cfg.scaling.cpus_per_worker))
    ds = _read_manifest(manifest_path)
    # One actor taking the single read task's blocks one at a time, in the order they are read: it counts
    # rows, so each row gets its manifest position without the manifest passing through the driver.
    ds = ds.map_batches(_Select, batch_format="pyarrow", batch_size=None, num_cpus=0,
                        fn_constructor_kwargs={"keys": keys, "todo": sorted(todo), "shard_size": shard_size},
                        compute=ray.data.ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=1))
    ds = ds.repartition(max(1, -(-total // cfg.data.decode_batch_size)))
    # ray_remote_args_fn keeps decoding an operator of its own: Ray Data would otherwise fuse a task map
    # into the actor map after it, and decode inside the embedding actors (an accelerator waiting on PyAV).
    ds = ds.map_batches(_decode, batch_format="pyarrow", batch_size=cfg.data.decode_batch_size, num_cpus=1,
                        concurrency=cfg.data.decode_workers, ray_remote_args_fn=_decode_task_args,
                        fn_kwargs={"cfg_dict": cfg_dict, "image_size": int(backbone["image_size"])})
    ds = ds.map_batches(_Embed, fn_constructor_kwargs={"cfg_dict": cfg_dict, "threads": threads},
                        batch_format="pyarrow", batch_size=None,
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.scaling.num_workers),
                        **({"num_gpus": 1, "num_cpus": threads, **_accelerator(cfg)} if gpu
                           else {"num_cpus": cfg.scaling.cpus_per_worker}))
    ds = ds.map_batches(_ShardWriter, fn_constructor_kwargs={"root": store.root, "expected": expected,
                                                             "shard_size": shard_size,
                                                             "dim": int(backbone["embed_dim"])},
                        batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=1),
                        num_cpus=0)
    bar = Progress(total, "features", unit="row", enabled=progress)
    rows = rejected = shards = 0
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            n, bad, written = (int(pc.sum(batch[c]).as_py() or 0) for c in ("rows", "rejected", "shards"))
            rows, rejected, shards = rows + n, rejected + bad, shards + written
            bar.update(n, rejected=rejected, shards=shards)
    finally:
        bar.close()
    if rows != total or shards != len(todo):
        raise RuntimeError(f"feature extraction finished {rows}/{total} rows and {shards}/{len(todo)} shards; "
                           "re-run to finish the rest (finished shards are kept)")


def _read_manifest(manifest_path: str):
    """The manifest as a Ray Data dataset, read by ONE task (its blocks come out in file order)."""
    import ray
    from pyarrow import fs as pafs

    if "://" in manifest_path and not manifest_path.startswith("file://"):
        fs, path = pafs.FileSystem.from_uri(manifest_path)
    else:
        fs, path = pafs.LocalFileSystem(), manifest_path.removeprefix("file://")
    # Ray Data's V2 Parquet reader lists files through a pool of footer-reading actors it starts for every
    # read: ~10 s of process start-up on a 2-core node, for one small file whose footer the driver has
    # just read anyway. The V1 reader reads that footer where it is called (here) and the rows in one task.
    ctx = ray.data.DataContext.get_current()
    v2 = getattr(ctx, "use_datasource_v2", None)
    if v2:
        ctx.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(path, filesystem=fs, override_num_blocks=1)
    finally:
        if v2:
            ctx.use_datasource_v2 = v2


# -- the stages (run in Ray workers) --------------------------------------------------------------------
class _Select:
    """Manifest rows in the schema, with their key, of the shards still to do (blocks must come in order)."""

    def __init__(self, keys: np.ndarray, todo: list[int], shard_size: int):
        self.keys, self.todo, self.shard_size, self.seen = keys, todo, shard_size, 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.seen + batch.num_rows > len(self.keys):
            raise RuntimeError(f"the manifest read has more rows than the {len(self.keys)} the driver validated; "
                               "was it changed during extraction?")
        position = np.arange(self.seen, self.seen + batch.num_rows)
        self.seen += batch.num_rows
        return _select(batch, self.keys[position], self.todo, self.shard_size)


def _select(batch: pa.Table, key: np.ndarray, todo: list[int], shard_size: int) -> pa.Table:
    for field in MANIFEST_SCHEMA:
        if field.name not in batch.column_names:
            batch = batch.append_column(field, pa.nulls(batch.num_rows, field.type))
    mask = (key >= 0) & np.isin(key // shard_size, todo)
    out = batch.select(list(MANIFEST_SCHEMA.names)).cast(MANIFEST_SCHEMA).replace_schema_metadata(None)
    return out.append_column("_key", pa.array(key, pa.int64())).filter(pa.array(mask))


def _decode(batch: pa.Table, cfg_dict: dict[str, Any], image_size: int):
    """Decoded parts of the batch's rows (uint8 frames as Arrow tensors), yielded every ~PART_BYTES of
    frames so that an untrimmed video's windows stream on instead of piling up."""
    cfg = Config.model_validate(cfg_dict)
    decoder = RowDecoder(cfg.data, image_size, cfg.backbone.batch_size)
    meta = batch.select(list(MANIFEST_SCHEMA.names) + ["_key"])
    index: list[int] = []
    parts: list[dict[str, Any]] = []
    for i, row in enumerate(batch.select(list(MANIFEST_SCHEMA.names)).to_pylist()):
        for part in decoder.parts(row):
            index.append(i)
            parts.append(part)
            if sum(p["clips"].nbytes + p["static"].nbytes for p in parts) >= PART_BYTES:
                yield _parts_table(meta, index, parts)
                index, parts = [], []
    if parts:
        yield _parts_table(meta, index, parts)


PART_BYTES = 64 << 20  # decoded frames per output block of the decode stage


def _parts_table(meta: pa.Table, index: list[int], parts: list[dict[str, Any]]) -> pa.Table:
    from ray.data.extensions import ArrowVariableShapedTensorArray

    out = meta.take(pa.array(index, pa.int64()))
    for name in PART_FIELDS:
        out = out.append_column(_COLUMN.get(name, name), pa.array([p[name] for p in parts], _PART_TYPES[name]))
    for name in ("clips", "static"):
        out = out.append_column(name, ArrowVariableShapedTensorArray.from_numpy([p[name] for p in parts]))
    return out


def _decode_task_args() -> dict[str, Any]:
    return {"num_cpus": 1}


_COLUMN = {"num_frames": "decoded_frames", "fps": "decoded_fps"}  # not the manifest's own columns
_PART_TYPES = {"part": pa.int32(), "last": pa.bool_(), "ok": pa.bool_(), "reason": pa.string(),
               "detail": pa.string(), "padded": pa.bool_(), "num_frames": pa.int64(), "fps": pa.float64(),
               "problem": pa.string()}


def _tensors(column: pa.ChunkedArray) -> list[np.ndarray]:
    return [a for chunk in column.chunks for a in chunk.to_numpy()]


class _Embed:
    """The embedding actor: FeatureEmbedder over decoded parts; frames in, list<float32> features out."""

    def __init__(self, cfg_dict: dict[str, Any], threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.model = FeatureEmbedder(Config.model_validate(cfg_dict))

    def __call__(self, batch: pa.Table) -> pa.Table:
        clips, static, ok = _tensors(batch["clips"]), _tensors(batch["static"]), batch["ok"].to_pylist()
        feats = [self.model.embed_part({"ok": k, "clips": c, "static": s}) for k, c, s in zip(ok, clips, static)]
        out = batch.drop_columns(["clips", "static"])
        return (out.append_column("clips", float_lists([f["clips"] for f in feats]))
                .append_column("static", float_lists([f["static"] for f in feats])))


class _ShardWriter:
    """The one writing actor: parts -> rows -> shards, each shard written to the store when it is whole."""

    def __init__(self, root: str, expected: dict[int, int], shard_size: int, dim: int):
        self.store = FeatureStore(root)
        self.expected, self.shard_size, self.dim = expected, shard_size, dim
        self.parts: dict[int, list[dict[str, Any]]] = {}
        self.shards: dict[int, dict[int, tuple[dict, dict]]] = {}

    def __call__(self, batch: pa.Table) -> pa.Table:
        clips, static = _unflatten(batch["clips"], self.dim), _unflatten(batch["static"], self.dim)
        info = batch.drop_columns(["clips", "static"]).to_pylist()
        rows = rejected = written = 0
        for i, part in enumerate(info):
            parts = self.parts.setdefault(part["_key"], [])
            parts.append({**part, "num_frames": part["decoded_frames"], "fps": part["decoded_fps"],
                          "clips": clips[i], "static": static[i]})
            last = next((p for p in parts if p["last"]), None)
            if last is None or len(parts) != last["part"] + 1:
                continue  # more parts of this row to come
            del self.parts[part["_key"]]
            shard, pos = divmod(part["_key"], self.shard_size)
            row = {k: part[k] for k in MANIFEST_SCHEMA.names}
            res = join_parts(parts, self.dim)
            rows, rejected = rows + 1, rejected + (not res["ok"])
            done = self.shards.setdefault(shard, {})
            done[pos] = (row, res)
            if len(done) == self.expected[shard]:
                self._write(shard, self.shards.pop(shard))
                written += 1
        return pa.table({"rows": [rows], "rejected": [rejected], "shards": [written]})

    def _write(self, shard: int, done: dict[int, tuple[dict, dict]]) -> None:
        ordered = [done[i] for i in sorted(done)]
        self.store.write_rejects(shard, [
            {"uri": row["uri"], "split": row["split"], "reason": res["reason"], "detail": res["detail"], "shard": shard}
            for row, res in ordered if not res["ok"]])
        _write_shard(self.store, shard, [row for row, _ in ordered], dict(enumerate(res for _, res in ordered)))


def _unflatten(column: pa.ChunkedArray, dim: int) -> list[np.ndarray]:
    """list<float32> column -> one (n, dim) float32 array per row (views of the Arrow buffers)."""
    out = []
    for chunk in column.chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        offsets = chunk.offsets.to_numpy()
        base = offsets[0]
        out.extend(values[offsets[i] - base:offsets[i + 1] - base].reshape(-1, dim) for i in range(len(chunk)))
    return out


def _write_shard(store: FeatureStore, index: int, rows: list[dict], results: dict[int, dict]) -> None:
    """Write shard ``index``: the manifest ``rows`` with their results (rejected rows left out)."""
    out = []
    for i, row in enumerate(rows):
        res = results[i]
        if not res["ok"]:
            continue  # listed in the shard's rejects
        dim = int(res.get("dim") or _dim_of(res))
        full = {**row, "num_frames": row.get("num_frames") or res.get("num_frames"), "fps": row.get("fps") or res.get("fps")}
        out.append(feature_row(full, np.asarray(res["clips"], np.float32).reshape(-1, dim),
                               np.asarray(res["static"], np.float32).reshape(-1, dim), res["padded"]))
    store.write_shard(index, out)


def _dim_of(res: dict) -> int:
    """Feature width of a result whose arrays are already (n, d)."""
    for name in ("clips", "static"):
        a = np.asarray(res[name])
        if a.ndim == 2:
            return a.shape[1]
    raise ValueError("a result without 'dim' needs (n, d) feature arrays")


def ensure_features(cfg: Config, manifest_path: str, progress: bool = True) -> FeatureStore:
    """The complete feature store for (manifest, backbone, protocol), extracting what is missing."""
    root = default_store_root(cfg, manifest_path)
    return FeatureStore.open_complete(root) or extract_features(cfg, manifest_path, root, progress=progress)


def ensure_stores(cfg: Config, paths: list[str]) -> dict[str, FeatureStore]:
    """The complete feature store of each manifest (``paths``), extracting what is missing (Ray only then)."""
    return {path: ensure_features(cfg, path) for path in dict.fromkeys(paths)}
