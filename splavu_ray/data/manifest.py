"""The manifest: one Parquet row per video or image, the single input format of every job.

Builders (splavu_ray.data.builders) turn standard on-disk dataset layouts into manifests; the
built-in synthetic dataset writes one too. Everything downstream reads only this schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

# Private attributes of VISPR used by the paper's privacy protocol (docs/method.md).
VISPR_ATTRIBUTES: tuple[str, ...] = (
    "a17_color",  # skin colour
    "a4_gender",
    "a9_face_complete",
    "a10_face_partial",
    "a12_semi_nudity",
    "a64_rel_personal",
    "a65_rel_social",
)

SEGMENT_TYPE = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("label", pa.string())])
ANOMALY_SEGMENT_TYPE = pa.struct([("start", pa.float64()), ("end", pa.float64())])

SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),  # local path, s3://..., gs://...
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train / val / test / pretrain / ...
        pa.field("media", pa.string(), nullable=False),  # "video" or "image"
        pa.field("action", pa.string()),  # action class name (None when unlabelled)
        pa.field("action_id", pa.int32()),  # index into the manifest's action vocabulary, -1 = none
        pa.field("private_attributes", pa.list_(pa.string())),  # names of the attributes present
        pa.field("subject_id", pa.string()),
        pa.field("gender", pa.string()),  # perceived gender-presentation group
        pa.field("segments", pa.list_(SEGMENT_TYPE)),  # temporal action segments, seconds
        pa.field("anomaly", pa.bool_()),  # video-level anomaly label (weak supervision)
        pa.field("anomaly_segments", pa.list_(ANOMALY_SEGMENT_TYPE)),  # seconds
        pa.field("num_frames", pa.int64()),
        pa.field("fps", pa.float64()),
        # optional: URI of the row's person mask (splavu_ray.data.person_masks: one (T, H, W) bool mask per
        # frame, True on the person); what the ``blacken`` pixel baseline needs. None = no mask.
        pa.field("person_mask", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
REQUIRED = ("uri", "dataset", "split", "media")

# Schema-level metadata keys (JSON values): vocabularies shared by all rows.
META_ACTIONS = b"splavu.actions"
META_ATTRIBUTES = b"splavu.attributes"


class ManifestError(ValueError):
    """A manifest is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Manifest:
    """A validated manifest table plus its vocabularies."""

    table: pa.Table
    actions: tuple[str, ...]
    attributes: tuple[str, ...]

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()

    def split(self, *names: str) -> "Manifest":
        import pyarrow.compute as pc

        mask = pc.is_in(self.table["split"], value_set=pa.array(list(names)))
        return Manifest(self.table.filter(mask), self.actions, self.attributes)

    def where(self, column: str, value: Any) -> "Manifest":
        import pyarrow.compute as pc

        return Manifest(self.table.filter(pc.equal(self.table[column], value)), self.actions, self.attributes)

    def attribute_matrix(self):
        """(N, n_attributes) float32 multi-hot matrix of the private attributes."""
        import numpy as np

        index = {a: i for i, a in enumerate(self.attributes)}
        out = np.zeros((len(self), len(self.attributes)), dtype=np.float32)
        for r, present in enumerate(self.table["private_attributes"].to_pylist()):
            for name in present or ():
                if name in index:
                    out[r, index[name]] = 1.0
        return out


def _normalise_row(row: dict[str, Any], actions: Sequence[str]) -> dict[str, Any]:
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ManifestError(f"unknown manifest column(s) {sorted(unknown)}; allowed: {list(COLUMNS)}")
    out = {c: row.get(c) for c in COLUMNS}
    for c in REQUIRED:
        if not out[c]:
            raise ManifestError(f"manifest row is missing required column {c!r}: {row}")
    if out["media"] not in ("video", "image"):
        raise ManifestError(f"manifest column 'media' must be 'video' or 'image', got {out['media']!r}")
    if out["action"] is not None and out["action_id"] is None:
        if out["action"] not in actions:
            raise ManifestError(f"action {out['action']!r} is not in the action vocabulary")
        out["action_id"] = list(actions).index(out["action"])
    if out["action_id"] is None:
        out["action_id"] = -1
    for c in ("private_attributes", "segments", "anomaly_segments"):
        if out[c] is None:
            out[c] = []
    return out


def make_table(
    rows: Iterable[dict[str, Any]],
    actions: Sequence[str] = (),
    attributes: Sequence[str] = (),
) -> pa.Table:
    """Build a schema-conformant table; ``action_id`` is filled from ``actions`` when missing."""
    rows = [_normalise_row(r, actions) for r in rows]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    meta = {META_ACTIONS: json.dumps(list(actions)), META_ATTRIBUTES: json.dumps(list(attributes))}
    return table.replace_schema_metadata(meta)


def write_manifest(
    path: str,
    rows: Iterable[dict[str, Any]],
    actions: Sequence[str] = (),
    attributes: Sequence[str] = (),
) -> Manifest:
    table = make_table(rows, actions, attributes)
    fs, p = _filesystem(path)
    if fs is None:
        import os

        os.makedirs(os.path.dirname(os.path.abspath(p)) or ".", exist_ok=True)
    pq.write_table(table, p, filesystem=fs)
    return Manifest(table, tuple(actions), tuple(attributes))


def _filesystem(uri: str):
    """(filesystem, path) for local paths and s3:// / gs:// URIs (pyarrow.fs)."""
    if "://" in uri and not uri.startswith("file://"):
        from pyarrow import fs as pafs

        return pafs.FileSystem.from_uri(uri)
    return None, uri.removeprefix("file://")


def read_manifest(path: str) -> Manifest:
    """Read and validate a manifest (local path or s3:// / gs:// URI)."""
    fs, p = _filesystem(str(path))
    try:
        table = pq.read_table(p, filesystem=fs)
    except FileNotFoundError:
        raise ManifestError(f"manifest {path!r} does not exist") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {path!r} is not a readable Parquet file: {exc}") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ManifestError(f"manifest {path!r} lacks required column(s) {missing}; schema: {list(COLUMNS)}")
    # Add optional columns that are absent, then cast to the canonical schema.
    for field in SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    extra = [c for c in table.column_names if c not in COLUMNS]
    if extra:
        raise ManifestError(f"manifest {path!r} has unknown column(s) {extra}; schema: {list(COLUMNS)}")
    meta = table.schema.metadata or {}
    try:
        table = table.select(list(COLUMNS)).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ManifestError(f"manifest {path!r} does not match the schema: {exc}") from None
    actions = tuple(json.loads(meta.get(META_ACTIONS, b"[]")))
    attributes = tuple(json.loads(meta.get(META_ATTRIBUTES, b"[]")))
    if not actions:
        names = sorted({a for a in table["action"].to_pylist() if a})
        actions = tuple(names)
    if not attributes:
        attributes = tuple(sorted({a for lst in table["private_attributes"].to_pylist() for a in (lst or [])}))
    return Manifest(table.replace_schema_metadata(meta), actions, attributes)
