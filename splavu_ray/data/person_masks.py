"""Person masks: where the person is in every frame of a video or image (the ``blacken`` pixel baseline).

A manifest row may name a mask file in its optional ``person_mask`` column (local path, ``s3://`` or
``gs://``). The file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``: never pickle) holding one
array ``mask``, bool or uint8, shaped (T, H, W): one mask per frame of the file in decode order, True on
the person, in the displayed (upright) orientation. Its resolution need not be the video's: it is resized
to whatever size the frames were decoded at (:func:`resize_mask`). The built-in data writes one per file
(splavu_ray.data.synthetic); real datasets without masks leave the column empty, and the one thing that
needs it (``data.pixel.transform=blacken``) refuses such a manifest before any work (:func:`require_masks`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

COLUMN = "person_mask"


class PersonMaskError(ValueError):
    """A mask is missing, unreadable or does not fit the frames it should cover."""


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save a (T, H, W) mask (anything > 0 is the person) as a compressed ``.npz``."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise PersonMaskError(f"a person mask is (T, H, W), got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, mask=mask > 0)


def read_mask(uri: str) -> np.ndarray:
    """The (T, H, W) bool mask stored at ``uri`` (local path or s3:// / gs:// through pyarrow.fs)."""
    try:
        if "://" in uri and not uri.startswith("file://"):
            from pyarrow import fs as pafs

            fs, path = pafs.FileSystem.from_uri(uri)
            with fs.open_input_file(path) as f:
                data = f.read()
        else:
            data = Path(uri.removeprefix("file://")).read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            mask = np.asarray(z["mask"])
    except (OSError, ValueError, KeyError) as exc:
        raise PersonMaskError(f"cannot read the person mask {uri!r}: {exc}") from None
    if mask.ndim != 3:
        raise PersonMaskError(f"person mask {uri!r} must be (T, H, W), got shape {mask.shape}")
    return mask > 0


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., h, w) bool masks at (height, width): a pixel of the output is the person when any part of the
    source pixels it covers is (area pooling, then > 0), so resizing never uncovers part of a person."""
    mask = np.asarray(mask, bool)
    if mask.shape[-2:] == (height, width):
        return mask
    lead = mask.shape[:-2]
    x = torch.from_numpy(mask.reshape(-1, 1, *mask.shape[-2:]).astype(np.float32))
    y = F.adaptive_avg_pool2d(x, (height, width)) > 0
    return y.reshape(*lead, height, width).numpy()


def frame_masks(row: Mapping[str, Any], indices: np.ndarray, height: int, width: int) -> np.ndarray:
    """The masks of the decoded frames ``indices`` (any shape) of ``row``, at (height, width):
    shape ``indices.shape + (height, width)``. An image's mask has one frame, used for every index."""
    return RowMasks(row).of(indices, height, width)


def require_masks(rows: Iterable[Mapping[str, Any]], where: str) -> None:
    """Refuse rows without a ``person_mask`` (clear error before any decoding)."""
    missing = [r.get("uri") for r in rows if not r.get(COLUMN)]
    if missing:
        raise PersonMaskError(
            f"data.pixel.transform=blacken needs a person mask for every row, but {len(missing)} row(s) of {where} "
            f"have no {COLUMN!r} column value (e.g. {missing[0]!r}); give the manifest a {COLUMN!r} column "
            f"(splavu_ray/data/person_masks.py) or choose another transform")


def require_manifest_masks(manifest_paths: Iterable[str], skip_splits: Iterable[str] = ()) -> None:
    """:func:`require_masks` for every row feature extraction embeds from these manifests (all splits but
    ``skip_splits``): reads only the manifests' ``uri``, ``split`` and ``person_mask`` columns."""
    from .manifest import read_manifest

    skip = set(skip_splits)
    for path in dict.fromkeys(str(p) for p in manifest_paths):
        table = read_manifest(path).table.select(["uri", "split", COLUMN])
        require_masks((r for r in table.to_pylist() if r["split"] not in skip), f"manifest {path!r}")


class RowMasks:
    """The person masks of one row, read once, cut to the frames a decoder produced (``blacken``)."""

    def __init__(self, row: Mapping[str, Any]):
        self.row = row
        uri = row.get(COLUMN)
        if not uri:
            require_masks([row], f"manifest row {row.get('uri')!r}")
        self.mask = read_mask(str(uri))

    def of(self, indices: np.ndarray, height: int, width: int) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        if len(self.mask) == 1:  # a still image: one mask whatever frame index
            idx = np.zeros_like(idx)
        elif idx.size and (idx.min() < 0 or idx.max() >= len(self.mask)):
            raise PersonMaskError(f"person mask {self.row.get(COLUMN)!r} has {len(self.mask)} frames but frame "
                                  f"{int(idx.max())} of {self.row.get('uri')!r} was decoded; the mask must have one "
                                  f"frame per video frame")
        return resize_mask(self.mask[idx.ravel()], height, width).reshape(*idx.shape, height, width)

    def blacken(self, frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``frames`` (indices.shape + (H, W, 3)) uint8 with the person black."""
        from .pixel_ops import blacken

        if frames.size == 0:
            return frames
        return blacken(frames, self.of(indices, frames.shape[-3], frames.shape[-2]))
