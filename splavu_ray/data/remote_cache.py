"""Remote folders (s3://, gs://) copied once per node into a local cache: backbone weights live in object
storage on a cluster whose nodes share nothing else.

``local_copy(uri)`` lists the folder through pyarrow.fs (the same filesystems the manifests and the
feature store use; an S3-compatible endpoint comes from ``AWS_ENDPOINT_URL``), and copies it under
``$SPLAVU_WEIGHTS_CACHE`` (default ``~/.cache/splavu_ray/weights``) unless a complete copy of the same
listing (every file's path and size) is already there. Concurrent processes on one node wait on a file
lock, so a node downloads a folder once however many workers ask for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://")
STAMP = ".splavu_listing.json"


class RemoteFolderError(RuntimeError):
    """A remote folder cannot be listed or copied; the message names the URI and the reason."""


def is_remote_folder(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def cache_root() -> Path:
    return Path(os.path.expanduser(os.environ.get("SPLAVU_WEIGHTS_CACHE", "~/.cache/splavu_ray/weights")))


def listing(uri: str) -> tuple[object, str, dict[str, int]]:
    """(filesystem, base path, {relative path: size}) of every file below ``uri``."""
    from pyarrow import fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri.rstrip("/"))
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except Exception as exc:  # unknown scheme, credentials, network
        raise RemoteFolderError(f"cannot list {uri}: {type(exc).__name__}: {exc}") from None
    files = {i.path[len(base):].lstrip("/"): int(i.size or 0) for i in infos if i.type == pafs.FileType.File}
    if not files:
        raise RemoteFolderError(f"{uri} holds no files (is the path right, and the weights uploaded there?)")
    return fs, base, files


def local_copy(uri: str, root: Path | None = None) -> str:
    """The local folder holding a complete copy of the remote folder ``uri`` (downloaded when needed)."""
    fs, base, files = listing(uri)
    root = root or cache_root()
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "folder"
    dest = root / f"{name}-{hashlib.sha256(uri.rstrip('/').encode()).hexdigest()[:12]}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = dest / STAMP
        if stamp.is_file() and json.loads(stamp.read_text()) == files:
            return str(dest)
        tmp = root / f".{dest.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in sorted(files):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with fs.open_input_stream(f"{base}/{rel}") as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 8 << 20)
            except Exception as exc:  # noqa: BLE001 - named in the message; the partial copy is dropped
                shutil.rmtree(tmp, ignore_errors=True)
                raise RemoteFolderError(f"cannot copy {uri}/{rel}: {type(exc).__name__}: {exc}") from None
        (tmp / STAMP).write_text(json.dumps(files))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return str(dest)
