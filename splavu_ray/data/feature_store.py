"""The feature store: frozen-backbone features of every manifest row, in Parquet shards.

Layout of a store folder (local path or s3:// / gs:// URI)::

    meta.json                 backbone description, clip protocol, manifest, feature width
    shards/part-00000.parquet one row per manifest row: the manifest columns + features
    rejects/part-00000.jsonl  the rows of that shard that could not be decoded, with the reason
                              (written before the shard, by whoever writes the shard)
    rejects.jsonl             all of them, merged when the store is complete (``FeatureStore.rejects``)

Feature columns (float32, flattened, with their counts):
    clips       (num_clips, dim)  clip features (trimmed: evenly spaced clips; untrimmed: windows)
    static      (num_static, dim) static-clip features (one frame tiled over the clip)
A shard is written atomically (temporary name, then rename), so a re-run skips finished shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Config
from .manifest import SCHEMA as MANIFEST_SCHEMA
from .pixel_ops import LEARNED, anonymizer_digest

META = "meta.json"
SHARDS = "shards"
REJECTS = "rejects.jsonl"  # rows extraction dropped, one JSON line each (all shards, merged)
REJECTS_DIR = "rejects"  # the same, one file per shard: rejects/part-00000.jsonl

FEATURE_FIELDS = [
    pa.field("clips", pa.list_(pa.float32())),
    pa.field("num_clips", pa.int32()),
    pa.field("static", pa.list_(pa.float32())),
    pa.field("num_static", pa.int32()),
    pa.field("padded", pa.bool_()),  # the video was shorter than a clip and was padded
]
SCHEMA = pa.schema(list(MANIFEST_SCHEMA) + FEATURE_FIELDS)


PROTOCOL_VERSION = 1  # bump when what a row's features mean changes: it is part of the store's identity


class FeatureStoreError(RuntimeError):
    pass


def is_untrimmed(row: dict[str, Any], untrimmed_splits=()) -> bool:
    """Untrimmed rows are embedded as sequential windows (TAD / anomaly videos), the others as clips."""
    return bool(row.get("segments")) or row.get("anomaly") is True or row.get("split") in untrimmed_splits


def manifest_stamp(manifest_path: str) -> str:
    """The manifest's content identity: size and modification time (ns for a local file; what the object
    store reports for an s3:// / gs:// one), so a manifest edited at the same path gets another store."""
    fs, path = _fs(str(manifest_path))
    if fs is None:
        try:
            st = os.stat(path)
        except OSError:
            return "missing"
        return f"{st.st_size}-{st.st_mtime_ns}"
    info = fs.get_file_info(path)
    if info.type.name == "NotFound":
        return "missing"
    mtime = info.mtime_ns if info.mtime_ns is not None else "?"
    return f"{info.size}-{mtime}"


def store_key(cfg: Config, manifest_path: str) -> str:
    """Identity of a feature store: manifest (path + :func:`manifest_stamp`), backbone, clip protocol."""
    stamp = manifest_stamp(manifest_path)
    d = cfg.data
    ident = {
        "manifest": str(manifest_path), "stamp": stamp, "backbone": cfg.backbone.model_dump(exclude={"batch_size"}),
        "clip_len": d.clip_len, "stride": d.frame_stride, "eval_clips": d.num_eval_clips,
        "static": d.num_static_frames, "protocol": PROTOCOL_VERSION,
    }
    ident["skip_splits"] = sorted(d.skip_feature_splits)
    if d.min_frames is not None:  # unset (half a clip) keeps the identity stores had before the setting existed
        ident["min_frames"] = d.min_frames
    if d.pixel.transform is not None:  # a pixel baseline's frames: a store of its own (data.pixel)
        ident["pixel"] = d.pixel.model_dump(exclude={"anonymizer"})  # (the baselines' identity as before it)
        if d.pixel.transform == LEARNED:  # f_P: its weights' digest, wherever the export lies
            ident["pixel"]["anonymizer"] = anonymizer_digest(d.pixel.anonymizer)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def default_store_root(cfg: Config, manifest_path: str) -> str:
    """Where the store of (manifest, backbone, protocol) lives: under ``data.cache_dir``/features."""
    base = os.path.expanduser(cfg.data.cache_dir)
    if "://" in base:
        return f"{base.rstrip('/')}/features/{store_key(cfg, manifest_path)}"
    return str(Path(base) / "features" / store_key(cfg, manifest_path))


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _fs(root: str):
    if "://" in root and not root.startswith("file://"):
        from pyarrow import fs as pafs

        if root.startswith("s3://") and "?" not in root:
            # small objects (meta, shards, rejects) in one PutObject rather than a multipart upload:
            # fewer requests, and what S3-compatible stores that lack multipart quirks (moto) accept
            root += "?allow_delayed_open=true"
        return pafs.FileSystem.from_uri(root)
    return None, str(Path(root.removeprefix("file://")).expanduser())


def feature_row(manifest_row: dict[str, Any], clips: np.ndarray, static: np.ndarray, padded: bool = False) -> dict:
    """One store row: the manifest row plus its (L, d) clip and (K, d) static features."""
    clips = np.asarray(clips, dtype=np.float32)
    static = np.asarray(static, dtype=np.float32)
    row = {k: manifest_row.get(k) for k in MANIFEST_SCHEMA.names}
    row.update(clips=clips.reshape(-1), num_clips=int(clips.shape[0]) if clips.size else 0,
               static=static.reshape(-1), num_static=int(static.shape[0]) if static.size else 0,
               padded=bool(padded))
    return row


@dataclass
class FeatureSplit:
    """In-memory features of some manifest rows (what training and evaluation consume)."""

    rows: list[dict[str, Any]]  # manifest columns
    clips: list[np.ndarray]  # per row (L_i, d)
    static: list[np.ndarray]  # per row (K_i, d)
    actions: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    dim: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def action_ids(self) -> np.ndarray:
        return np.array([r["action_id"] if r["action_id"] is not None else -1 for r in self.rows], dtype=np.int64)

    def attribute_matrix(self) -> np.ndarray:
        index = {a: i for i, a in enumerate(self.attributes)}
        out = np.zeros((len(self), len(self.attributes)), dtype=np.float32)
        for r, row in enumerate(self.rows):
            for name in row.get("private_attributes") or ():
                if name in index:
                    out[r, index[name]] = 1.0
        return out

    def stacked_clips(self) -> np.ndarray:
        """(N, L, d); every row must have the same number of clips (trimmed videos)."""
        lengths = {c.shape[0] for c in self.clips}
        if len(lengths) != 1:
            raise FeatureStoreError(f"rows have different clip counts {sorted(lengths)[:5]}; use .clips")
        return np.stack(self.clips)

    def stacked_static(self) -> np.ndarray:
        return np.stack(self.static)

    def first_static(self) -> np.ndarray:
        """(N, d): one static clip per row (images have exactly one)."""
        return np.stack([s[0] for s in self.static])


@dataclass
class FeatureStore:
    root: str
    meta: dict[str, Any] = field(default_factory=dict)

    # -- writing ---------------------------------------------------------------------------------
    def write_meta(self, meta: dict[str, Any]) -> None:
        fs, path = _fs(self.root)
        self.meta = meta
        data = json.dumps(meta, indent=2).encode()
        if fs is None:
            os.makedirs(os.path.join(path, SHARDS), exist_ok=True)
            Path(path, META).write_bytes(data)
        else:
            with fs.open_output_stream(f"{path}/{META}") as f:
                f.write(data)

    def write_shard(self, index: int, rows: Sequence[dict[str, Any]]) -> str:
        table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
        fs, path = _fs(self.root)
        final = f"{path}/{SHARDS}/{shard_name(index)}"
        tmp = f"{final}.tmp-{os.getpid()}"
        if fs is None:
            os.makedirs(os.path.dirname(final), exist_ok=True)
        pq.write_table(table, tmp, filesystem=fs)
        if fs is None:
            os.replace(tmp, final)
        else:
            fs.move(tmp, final)
        return final

    def write_rejects(self, index: int, records: Sequence[dict[str, Any]]) -> str:
        """The rejected rows of shard ``index`` (uri, reason, detail, ...), one JSON line each; written
        before the shard itself, so a finished shard always has its rejects beside it."""
        return self._write_bytes(f"{REJECTS_DIR}/{shard_name(index)[:-len('.parquet')]}.jsonl",
                                 "".join(json.dumps(r) + "\n" for r in records).encode())

    def merge_rejects(self) -> list[dict[str, Any]]:
        """Write ``rejects.jsonl``: the rejects of every finished shard, in shard order; returns them."""
        records = self.rejects()
        self._write_bytes(REJECTS, "".join(json.dumps(r) + "\n" for r in records).encode())
        return records

    def rejects(self) -> list[dict[str, Any]]:
        """The rows extraction dropped (one dict each, with ``uri``, ``reason``, ``detail``), read from the
        per-shard files of the finished shards (local or remote store)."""
        fs, path = _fs(self.root)
        out: list[dict[str, Any]] = []
        for i in sorted(self.finished_shards()):
            name = f"{path}/{REJECTS_DIR}/{shard_name(i)[:-len('.parquet')]}.jsonl"
            try:
                if fs is None:
                    data = Path(name).read_bytes()
                else:
                    with fs.open_input_stream(name) as f:
                        data = f.read()
            except (FileNotFoundError, OSError):
                continue  # a shard written before per-shard rejects existed
            out.extend(json.loads(line) for line in data.decode().splitlines() if line.strip())
        return out

    def _write_bytes(self, relative: str, data: bytes) -> str:
        fs, path = _fs(self.root)
        final = f"{path}/{relative}"
        if fs is None:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = f"{final}.tmp-{os.getpid()}"
            Path(tmp).write_bytes(data)
            os.replace(tmp, final)
        else:
            with fs.open_output_stream(final) as f:  # an object appears whole when the stream closes
                f.write(data)
        return final

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str) -> "FeatureStore":
        fs, path = _fs(root)
        try:
            if fs is None:
                meta = json.loads(Path(path, META).read_text())
            else:
                with fs.open_input_stream(f"{path}/{META}") as f:
                    meta = json.loads(f.read())
        except FileNotFoundError:
            raise FeatureStoreError(f"{root} is not a feature store (no {META}); run `python -m splavu_ray.features`") from None
        return cls(root, meta)

    def finished_shards(self) -> set[int]:
        fs, path = _fs(self.root)
        folder = f"{path}/{SHARDS}"
        if fs is None:
            names = os.listdir(folder) if os.path.isdir(folder) else []
        else:
            from pyarrow import fs as pafs

            names = [Path(i.path).name for i in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))]
        return {int(n[5:10]) for n in names if n.startswith("part-") and n.endswith(".parquet")}

    @classmethod
    def open_complete(cls, root: str) -> "FeatureStore | None":
        """The store at ``root`` when every shard of it is written; None when it is missing or partial."""
        try:
            store = cls.open(root)
        except (FeatureStoreError, OSError, ValueError):
            return None
        return store if store.complete else None

    @property
    def complete(self) -> bool:
        n = self.meta.get("num_shards")
        return n is not None and len(self.finished_shards()) >= n

    def table(self, splits: Iterable[str] | None = None) -> pa.Table:
        fs, path = _fs(self.root)
        files = [f"{path}/{SHARDS}/{shard_name(i)}" for i in sorted(self.finished_shards())]
        if not files:
            raise FeatureStoreError(f"feature store {self.root} has no finished shards")
        table = pa.concat_tables([pq.read_table(f, filesystem=fs, schema=SCHEMA) for f in files])
        if splits is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.is_in(table["split"], value_set=pa.array(list(splits))))
        return table

    def columns(self, *names: str) -> pa.Table:
        """Only the named columns of every finished shard (cheap: no feature column is read)."""
        fs, path = _fs(self.root)
        files = [f"{path}/{SHARDS}/{shard_name(i)}" for i in sorted(self.finished_shards())]
        if not files:
            return pa.table({n: pa.array([], SCHEMA.field(n).type) for n in names})
        return pa.concat_tables([pq.read_table(f, filesystem=fs, columns=list(names)) for f in files])

    def load(self, *splits: str) -> FeatureSplit:
        """Rows of the given splits (all if none), in manifest order."""
        table = self.table(splits or None)
        dim = int(self.meta["dim"])

        def unpack(col: str) -> list[np.ndarray]:
            values = table[col].combine_chunks()
            flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            offsets = values.offsets.to_numpy()
            return [flat[offsets[i]:offsets[i + 1]].reshape(-1, dim) for i in range(table.num_rows)]

        rows = table.select(MANIFEST_SCHEMA.names).to_pylist()
        return FeatureSplit(rows, unpack("clips"), unpack("static"),
                            tuple(self.meta.get("actions", ())), tuple(self.meta.get("attributes", ())), dim)
