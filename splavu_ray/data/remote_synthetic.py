"""The built-in data under an object-store cache (``data.cache_dir=s3://...`` or ``gs://...``).

Nodes of a cluster that share nothing but the bucket must read the same videos: the dataset is generated
once on the machine that asks for it (into the local cache, ``~/.cache/splavu_ray`` unless
``$SPLAVU_LOCAL_CACHE`` says otherwise), uploaded to ``CACHE_URI/synthetic-<fingerprint>/``, and its manifest
rewritten so that every row's URI points into the bucket. The remote manifest is written last, so a
folder whose ``manifest.parquet`` exists is complete; a later run (on any machine) finds it and generates
nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ConfigError
from ..run_folder import upload_folder
from .synthetic import SyntheticConfig, dataset_dir, ensure_synthetic

MANIFEST = "manifest.parquet"


def local_cache() -> str:
    return os.path.expanduser(os.environ.get("SPLAVU_LOCAL_CACHE", "~/.cache/splavu_ray"))


def rebase_uris(table: pa.Table, old: str, new: str) -> pa.Table:
    """Every string cell (``uri``, mask paths) that starts with the folder ``old`` now starts with ``new``."""
    old, new = old.rstrip("/") + "/", new.rstrip("/") + "/"
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            values = [v if v is None or not v.startswith(old) else new + v[len(old):]
                      for v in table.column(i).to_pylist()]
            table = table.set_column(i, field, pa.array(values, field.type))
    return table


def ensure_remote_synthetic(cfg: SyntheticConfig, cache_uri: str) -> str:
    """URI of the manifest of the built-in dataset for ``cfg`` under ``cache_uri``; generates it locally and
    uploads it when the bucket does not hold it yet."""
    from pyarrow import fs as pafs

    remote = f"{cache_uri.rstrip('/')}/{dataset_dir(cfg, '').name}"
    manifest_uri = f"{remote}/{MANIFEST}"
    try:
        fs, path = pafs.FileSystem.from_uri(manifest_uri)
        if fs.get_file_info(path).type == pafs.FileType.File:
            return manifest_uri
    except Exception as exc:  # noqa: BLE001 - unknown scheme, credentials, endpoint: name the URI
        raise ConfigError(f"data.cache_dir={cache_uri}: cannot read {manifest_uri}: {type(exc).__name__}: {exc}") from None
    local_manifest = Path(ensure_synthetic(cfg, local_cache()))
    folder = local_manifest.parent
    print(f"[splavu] uploading the built-in data {folder} to {remote}", flush=True)
    upload_folder(folder, remote, exclude=(MANIFEST,))
    table = pq.read_table(local_manifest)
    table = rebase_uris(table, str(folder.expanduser().absolute()), remote)
    pq.write_table(table, path, filesystem=fs)  # last: the folder is complete once the manifest exists
    return manifest_uri

