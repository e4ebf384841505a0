"""Online clip pipeline: manifest -> Ray Data -> fixed-shape uint8 clip rows -> Ray Train workers.

    ds = clip_dataset("manifest.parquet", ["train"], mode="train", clip_len=16, size=224,
                      decode_workers=2, batch_size=4, rejects_path="out/rejects.jsonl",
                      epochs=30)  # one execution streams 30 epochs (rows tagged with their epoch)
    # driver: TorchTrainer(..., datasets={"train": ds})   (Ray Train streaming_split's it, equal=True)
    # worker: ONE iterator for the whole run, steps_per_epoch batches per epoch (distributed.online_source.OnlineSource):
    #         it = iter(iter_train_batches(ray.train.get_dataset_shard("train"), 8))

Design (why):
- The source is the manifest itself, a few bytes per video (row_index, uri, trusted frame count,
  action id), cut into blocks of ``batch_size`` rows. Decoding happens in ONE stage,
  ``map_batches(ClipDecoder, compute=ActorPoolStrategy(...))``: a callable class, so PyAV and the
  planning code are imported once per actor, not once per batch. Each video is decoded once, in one
  sequential pass, for all its clips and static frames (data/decode.py plans every index first).
- Rows are fixed-shape and numeric only (``iter_torch_batches`` rejects string columns): ``clips``
  uint8 (T, S, S, 3) in train mode or (C, T, S, S, 3) in eval mode, ``static`` uint8 (K, S, S, 3),
  ``action_id`` int64, ``row_index`` int64 (the row's position in the whole manifest). Frames are
  decoded straight to short side ``S`` (libswscale, per frame) and centre-cropped to S x S, so every
  row of a dataset has one shape. Augmentation (RandomResizedCrop + flip) is the training worker's
  job, on these uint8 tensors.
- Randomness is reproducible AND different every epoch: a train row's clip start and static frames
  come from ``np.random.default_rng([seed, row_index, epoch])``. What "epoch" is depends on how the
  dataset is run:

  * ``epochs=None`` (one epoch per execution): ``epoch`` is Ray Data's execution index of the dataset,
    ``DataContext._execution_idx``, the counter Ray's own ``RandomSeedConfig(reseed_after_execution=True)``
    uses. It is a private attribute, checked against Ray 2.60: the executor's context (copied into every
    map actor) counts finished executions, also through ``streaming_split`` (the split coordinator
    re-executes once per epoch); ``take_all`` counts too, so "epoch" means "execution".
    tests/distributed/test_clip_stream.py pins the behaviour; if a Ray release drops the attribute, train clips
    fall back to fresh randomness with one warning. The order of videos is shuffled per execution the
    same way (``randomize_block_order``, blocks of ``batch_size`` videos). Ray Data starts a new decode
    actor pool for every execution (ray#46479, open), 2-3 s of start-up per epoch on 2 cores.
  * ``epochs=E, first_epoch=F`` (a multi-epoch stream, what the trainer uses): ONE execution streams
    epochs F .. F+E-1 through one actor pool, so the pool starts once per run. The source rows are
    (row_index, epoch), epoch-major, each epoch in its own order (runs of ``batch_size`` consecutive
    manifest rows, shuffled by ``default_rng([seed, epoch])``), and the decoder reads the rng's
    ``epoch`` from the row, not from Ray. Output rows carry ``epoch`` too. Every execution of such a
    dataset replays the same epochs (same clips, same source order); the actor pool does not preserve
    order, so a few rows of epoch e+1 can come out before the last rows of epoch e.

  ``iter_train_batches(local_shuffle_buffer_size=...)`` mixes further.
- Bad input never fails a job: a video that cannot be decoded (missing, empty, corrupt, not a video,
  no frames, ... see data.decode.REASONS) is dropped by the actor, logged, counted in Ray's metrics
  (``splavu_data_rejected_videos{reason}``) and, when ``rejects_path`` is set, appended as one JSON line
  (uri, reason, detail, row_index, split, epoch, pid) to that file. Each line is written with a single
  ``O_APPEND`` write, so actors on one machine (or on a shared POSIX filesystem) never interleave lines.
  On a cluster whose nodes share nothing, ``rejects_path`` is an s3:// / gs:// URI: an object store has no
  append, so each actor rewrites its own part file under ``rejects_path + ".parts/"`` (bad videos are
  rare) and :func:`read_rejects` reads them all.
  A bad video is met again every epoch, so the file can list it several times: :func:`read_rejects`
  returns one record per (row, reason) and :func:`reject_counts` the numbers for the metrics.
  Files that decode only partly (truncated, or damaged part-way) are dropped too, with that reason, as
  ``validate`` does by default (``keep_partial=True`` keeps their valid frames instead). Decoding stops
  after the last frame a row needs, so damage AFTER it is only seen through the container structure
  (a cheap header walk: a cut mp4/mkv/avi declares more bytes than it has); damage in the middle of the
  encoded data past the last needed frame is not: ``python -m splavu_ray.data validate`` decodes every
  frame and is the tool for that.
  An unexpected exception (not a DecodeError) is also dropped with reason ``"error"``, but an actor that
  sees only such errors (8 in a row, no success) raises: that is a bug, not bad input.

Memory (long videos, ray#32746, #40287, #65544):
- Decoding keeps only the requested frames, converted at the target size, and stops after the last one
  (data/decode.py); a 10-minute video costs decode TIME, not memory: one train row holds T + K frames of
  S x S x 3 bytes (16 x 224 x 224 x 3 = 2.4 MB per clip).
- A multi-epoch stream keeps its source small: 16 bytes per (video, epoch) in the object store
  (row_index, epoch; 240k videos x 40 epochs = 154 MB), while the manifest columns the decoder needs
  (uri, split, num_frames, action_id) travel once, with the decoder's arguments, and are looked up by
  row_index in the actor. Nothing decoded is materialized: the stream is consumed as it is decoded.
- Per actor at most ``max_tasks_in_flight_per_actor=2`` batches are queued, and each output block is one
  batch (``batch_size`` rows; 4 eval rows of 5 clips at 224 px = 48 MB). Ray Data's streaming executor
  backpressures the decoders on the object store budget, so a slow trainer never lets decoded clips pile
  up. Keep ``batch_size`` small (4-16) at 224 px; raise it for small frames (it amortises Ray's
  per-task overhead, see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import traceback
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np

from ..run_folder import is_remote

log = logging.getLogger("splavu_ray.distributed.clip_stream")

MODES = ("train", "eval")
DEFAULT_EVAL_CLIPS = 5  # DataConfig.num_eval_clips
DEFAULT_STATIC_POOL = 10  # DataConfig.num_static_frames: the paper draws 2 of 10 evenly spaced frames
MAX_SOURCE_BLOCKS = 2000  # cap on source blocks (driver-side ray.put calls) for huge manifests
ERROR_REASON = "error"  # reject reason of an unexpected (non-DecodeError) exception
_MAX_UNEXPECTED_BEFORE_FIRST_SUCCESS = 8


# --------------------------------------------------------------------------- helpers (no Ray)


def square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (..., h, w, 3) frames to (..., size, size, 3).

    Frames decoded with short side ``size`` only need the crop; a side shorter than ``size`` (which
    decoding with ``size`` never produces) is stretched by nearest-neighbour sampling as a last resort,
    so a row's shape never depends on its video.
    """
    h, w = frames.shape[-3], frames.shape[-2]
    if h >= size and w >= size:
        top, left = (h - size) // 2, (w - size) // 2
        out = frames[..., top : top + size, left : left + size, :]
    else:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = frames[..., top : top + side, left : left + side, :]
        pick = np.minimum((np.arange(size) * side) // size, side - 1)
        out = crop[..., pick, :, :][..., :, pick, :]
    return np.ascontiguousarray(out)


def _train_plan(rng: np.random.Generator, clip_len: int, num_clips: int, stride: int, static_k: int,
                static_pool: int):
    """A decode plan n -> indices for one train row (clips first, then static frames) and the dict the
    plan fills with the shaped parts. Static frames: ``static_k`` DISTINCT positions drawn from
    ``static_pool`` evenly spaced frames (a video shorter than the pool repeats frames)."""
    from ..data.sampling import plan_clips, static_frame_indices

    planned: dict[str, np.ndarray] = {}

    def plan(n: int) -> np.ndarray:
        clip_plan = plan_clips("train", n, clip_len, num_clips, stride, rng)
        planned["clips"], planned["clips_padded"] = clip_plan.indices, clip_plan.padded
        parts = [planned["clips"].ravel()]
        if static_k:
            pool = static_frame_indices(n, max(static_pool, static_k)).indices
            planned["static"] = pool[rng.choice(len(pool), size=static_k, replace=False)]
            parts.append(planned["static"])
        return np.concatenate(parts)

    return plan, planned


def _structure_problem(uri: str) -> str | None:
    """'truncated' when the container declares more data than the file holds (data/decode.py's header walk).

    Only "truncated" is trusted here: odd structure after fully decodable frames is not worth a drop
    (data/decode.py makes the same call)."""
    from ..data.decode import DecodeError, container_problem, open_binary

    try:
        with open_binary(uri) as (f, size):
            return "truncated" if container_problem(f, size) == "truncated" else None
    except DecodeError as exc:  # vanished since it was decoded: report that
        return exc.reason


def _execution_index() -> int | None:
    """How many times this dataset has been executed before (the epoch), inside a Ray Data worker."""
    try:
        from ray.data import DataContext

        idx = getattr(DataContext.get_current(), "_execution_idx", None)
        return int(idx) if idx is not None else None
    except Exception:  # noqa: BLE001 - outside Ray Data, or an API change: fall back to fresh entropy
        return None


class ClipDecoder:
    """The map_batches UDF (one instance per actor): numpy batch of manifest rows -> clip rows.

    Input columns: row_index, uri, split, num_frames (0 = unknown), action_id, and optionally epoch.
    With ``manifest`` (a :func:`source_table`), a batch may carry only row_index (+ epoch): the other
    columns are looked up there by row_index (the multi-epoch stream's compact source). Output columns:
    clips, static, action_id, row_index, and epoch when the input has it (bad rows removed). A row's
    ``epoch`` seeds its train clip; without the column the epoch is Ray Data's execution index.
    Usable without Ray (tests, benchmarks).
    """

    def __init__(self, mode: str = "train", clip_len: int = 16, num_clips: int | None = None, static_k: int = 2,
                 size: int = 224, seed: int | None = 0, stride: int = 1, rejects_path: str | None = None,
                 static_pool: int = DEFAULT_STATIC_POOL, keep_partial: bool = False, manifest=None,
                 min_frames: int | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.mode, self.clip_len, self.static_k, self.size = mode, clip_len, static_k, int(size)
        self.num_clips = num_clips if num_clips else (1 if mode == "train" else DEFAULT_EVAL_CLIPS)
        self.squeeze = mode == "train" and not num_clips  # train default: one clip -> (T, S, S, 3)
        self.seed, self.stride, self.static_pool = seed, stride, static_pool
        self.rejects_path, self.keep_partial = rejects_path, keep_partial
        self._remote_rejects: list[dict[str, Any]] = []  # this actor's records, when rejects_path is a URI
        from ..data.decode import default_min_frames  # lazily, as everywhere in this module: actors unpickle it

        self.min_frames = min_frames if min_frames is not None else default_min_frames(clip_len)
        self.ok = self.rejected = self.unexpected = self.padded = 0
        self._metrics = self._make_metrics()
        self._warned_epoch = False
        self._lookup = None
        if manifest is not None:  # column -> numpy array, sorted by row_index
            cols = {name: manifest[name].to_numpy() for name in manifest.column_names}
            order = np.argsort(cols["row_index"], kind="stable")
            self._lookup = {name: col[order] for name, col in cols.items()}

    def _manifest_rows(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A batch of (row_index[, epoch]) completed with the manifest columns of those rows."""
        if self._lookup is None:
            raise ValueError("batch has no 'uri' column and the decoder has no manifest to look rows up in")
        known = self._lookup["row_index"]
        want = np.asarray(batch["row_index"], dtype=np.int64)
        pos = np.minimum(np.searchsorted(known, want), len(known) - 1)
        if len(want) and not np.array_equal(known[pos], want):
            raise KeyError(f"row_index {sorted(set(want[known[pos] != want].tolist()))[:5]} not in the manifest")
        return {**{name: col[pos] for name, col in self._lookup.items()},
                **{k: v for k, v in batch.items() if k != "row_index"}}

    # -- shapes --------------------------------------------------------------------------------
    @property
    def clip_shape(self) -> tuple[int, ...]:
        frame = (self.clip_len, self.size, self.size, 3)
        return frame if self.squeeze else (self.num_clips, *frame)

    @property
    def static_shape(self) -> tuple[int, ...]:
        return (self.static_k, self.size, self.size, 3)

    # -- one video -------------------------------------------------------------------------------
    def _rng(self, row_index: int, epoch: int | None) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        if epoch is None:
            if not self._warned_epoch:
                log.warning("Ray Data execution index unavailable: train clips use fresh randomness")
                self._warned_epoch = True
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), int(row_index), int(epoch)])

    def decode(self, row: dict[str, Any], epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """(clips, static, padded clip positions) of one manifest row, already squared; raises DecodeError
        (also for a file that decodes only partly, unless ``keep_partial``, and for a file wrong for its
        row: an image in a video row, a video shorter than ``min_frames``)."""
        from ..data.decode import DecodeError, check_row, decode_video, load_clips

        trusted = int(row.get("num_frames") or 0) or None
        media = str(row["media"]) if row.get("media") is not None else None
        if self.mode == "eval":
            out = load_clips({"uri": row["uri"], "num_frames": trusted, "media": media}, mode="eval",
                             clip_len=self.clip_len, num_clips=self.num_clips, static_k=self.static_k,
                             size=self.size, stride=self.stride, min_frames=self.min_frames)
            clips, problem, warnings, padded = out["clips"], out["problem"], out["warnings"], out["padded"]
            static = out.get("static", np.zeros((0, *clips.shape[-3:]), np.uint8))
        else:
            plan, planned = _train_plan(self._rng(row["row_index"], epoch), self.clip_len, self.num_clips,
                                        self.stride, self.static_k, self.static_pool)
            video = decode_video(str(row["uri"]), plan, size=self.size, num_frames=trusted)
            check_row(str(row["uri"]), media, video.is_image, video.num_frames, self.min_frames, video.problem)
            count = planned["clips"].size
            # positions the plan repeated (a video shorter than a clip) + any clamped past a lying header's end
            padded = planned["clips_padded"] + int((video.indices.ravel()[:count] != planned["clips"].ravel()).sum())
            flat = video.frames.reshape(-1, *video.frames.shape[-3:])
            clips = flat[:count].reshape(planned["clips"].shape + flat.shape[1:])
            static = flat[count:]
            problem, warnings = video.problem, video.warnings
        if not self.keep_partial:
            problem = problem or _structure_problem(str(row["uri"]))
            if problem:
                raise DecodeError(problem, str(row["uri"]), "; ".join(warnings) or "container structure")
        clips = square(clips, self.size)
        if self.squeeze:
            clips = clips[0]
        return clips, square(static, self.size), padded

    # -- the batch -------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..data.decode import DecodeError

        if "uri" not in batch:
            batch = self._manifest_rows(batch)
        row_epochs = batch.get("epoch")  # a multi-epoch stream: each row says its epoch
        epoch = None if row_epochs is not None else _execution_index() if self.mode == "train" else 0
        clips, static, action, index, epochs, padded = [], [], [], [], [], []
        for i in range(len(batch["row_index"])):
            row = {k: v[i] for k, v in batch.items()}
            row_index = int(row["row_index"])
            if row_epochs is not None:
                epoch = int(row_epochs[i])
            try:
                c, s, pad = self.decode(row, epoch)
            except DecodeError as exc:
                self._reject(row, exc.reason, exc.detail, epoch)
                continue
            except Exception as exc:  # noqa: BLE001 - bad input must not fail the job ...
                self.unexpected += 1
                self._reject(row, ERROR_REASON, f"{type(exc).__name__}: {exc}", epoch)
                log.warning("unexpected error decoding %s:\n%s", row["uri"], traceback.format_exc())
                if self.ok == 0 and self.unexpected >= _MAX_UNEXPECTED_BEFORE_FIRST_SUCCESS:
                    raise RuntimeError(  # ... but a decoder that never succeeds is a bug
                        f"{self.unexpected} unexpected decode errors and no success; last: {exc!r}") from exc
                continue
            if c.shape != self.clip_shape or s.shape != self.static_shape:  # cannot happen: belt and braces
                self._reject(row, ERROR_REASON, f"shape {c.shape}/{s.shape}, expected {self.clip_shape}/"
                             f"{self.static_shape}", epoch)
                continue
            self.ok += 1
            self._count("splavu_data_decoded_videos", None)
            if pad:  # shorter than a clip but not too short: kept, its last frame repeated, and counted
                self.padded += 1
                self._count("splavu_data_padded_videos", None)
            clips.append(c), static.append(s), action.append(int(row["action_id"])), index.append(row_index)
            epochs.append(epoch), padded.append(pad)
        out = {
            "clips": np.stack(clips) if clips else np.zeros((0, *self.clip_shape), np.uint8),
            "static": np.stack(static) if static else np.zeros((0, *self.static_shape), np.uint8),
            "action_id": np.asarray(action, dtype=np.int64),
            "row_index": np.asarray(index, dtype=np.int64),
            "padded": np.asarray(padded, dtype=np.int64),  # clip positions that repeat the last frame
        }
        if row_epochs is not None:
            out["epoch"] = np.asarray(epochs, dtype=np.int64)
        return out

    # -- rejects and metrics -----------------------------------------------------------------------
    def _reject(self, row: dict[str, Any], reason: str, detail: str, epoch: int | None) -> None:
        self.rejected += 1
        uri = str(row["uri"])
        log.warning("rejected %s: %s %s", uri, reason, detail or "")
        self._count("splavu_data_rejected_videos", reason)
        if not self.rejects_path:
            return
        record = {"uri": uri, "reason": reason, "detail": detail or "", "row_index": int(row["row_index"]),
                  "split": str(row.get("split", "")), "mode": self.mode, "epoch": epoch,
                  "host": socket.gethostname(), "pid": os.getpid(), "time": round(time.time(), 3)}
        if is_remote(self.rejects_path):  # an object store has no append: this actor rewrites its own part
            self._remote_rejects.append(record)
            write_reject_part(self.rejects_path, self._remote_rejects)
        else:
            append_json_line(self.rejects_path, record)

    @staticmethod
    def _make_metrics() -> dict[str, Any]:
        if "ray" not in sys.modules:  # used without Ray (tests, the benchmark's plain loop): no import cost
            return {}
        try:
            import ray
            from ray.util.metrics import Counter as RayCounter

            if not ray.is_initialized():
                return {}
            return {
                "splavu_data_decoded_videos": RayCounter(
                    "splavu_data_decoded_videos", description="videos decoded into clip rows"),
                "splavu_data_rejected_videos": RayCounter(
                    "splavu_data_rejected_videos", description="videos dropped by the clip pipeline",
                    tag_keys=("reason",)),
                "splavu_data_padded_videos": RayCounter(
                    "splavu_data_padded_videos", description="videos shorter than a clip, padded with their last frame"),
            }
        except Exception:  # noqa: BLE001 - metrics are best effort
            return {}

    def _count(self, name: str, reason: str | None) -> None:
        metric = self._metrics.get(name)
        if metric is not None:
            try:
                metric.inc(1, tags={"reason": reason} if reason else None)
            except Exception:  # noqa: BLE001
                pass


def append_json_line(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write (atomic between processes on POSIX)."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    data = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def reject_parts(uri: str) -> str:
    """The folder of per-actor part files that stand for the rejects file ``uri`` in an object store."""
    return uri + ".parts"


def write_reject_part(uri: str, records: list[dict[str, Any]]) -> None:
    """(Re)write this process's part of the rejects file ``uri`` (s3:// / gs://): every record it has met."""
    from pyarrow import fs as pafs

    fs, base = pafs.FileSystem.from_uri(reject_parts(uri))
    with fs.open_output_stream(f"{base}/{socket.gethostname()}-{os.getpid()}.jsonl") as f:
        f.write("".join(json.dumps(r, default=str) + "\n" for r in records).encode())


def _reject_lines(path: str) -> list[str]:
    if is_remote(path):
        from pyarrow import fs as pafs

        fs, base = pafs.FileSystem.from_uri(reject_parts(path))
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        lines = []
        for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
            with fs.open_input_stream(info.path) as f:
                lines += f.read().decode().splitlines()
        return lines
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def read_rejects(path: str, unique: bool = True) -> list[dict[str, Any]]:
    """The rejects file as records (uri, reason, detail, row_index, split, mode, epoch, host, pid, time); for an
    s3:// / gs:// ``path``, the per-actor parts under ``path.parts/``.

    unique: one record per (row_index, uri, reason) (the first), with ``count`` = how many times it was
    met (once per epoch); False returns every line. A missing file means nothing was rejected: [].
    Lines that are not valid JSON (a writer killed mid-line) are skipped.
    """
    records = []
    for line in _reject_lines(path):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not unique:
        return records
    seen: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = (r.get("row_index"), r.get("uri"), r.get("reason"))
        if key in seen:
            seen[key]["count"] += 1
        else:
            seen[key] = {**r, "count": 1}
    return list(seen.values())


def reject_counts(path: str) -> dict[str, Any]:
    """Metrics of a rejects file: ``{"rejected": distinct videos, "by_reason": {reason: videos}}``."""
    records = read_rejects(path)
    return {"rejected": len({(r.get("row_index"), r.get("uri")) for r in records}),
            "by_reason": dict(Counter(r.get("reason") for r in records))}


# --------------------------------------------------------------------------- the dataset


def source_table(manifest_path: str, splits: Sequence[str] | str | None):
    """Arrow table (row_index, uri, split, media, num_frames, action_id) of the selected manifest rows;
    row_index is the position in the WHOLE manifest (stable across split selections)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..data.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    table = manifest.table
    table = table.append_column("row_index", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    if splits:
        names = [splits] if isinstance(splits, str) else list(splits)
        table = table.filter(pc.is_in(table["split"], value_set=pa.array(names)))
        if table.num_rows == 0:
            have = sorted(set(manifest.table["split"].to_pylist()))
            raise ValueError(f"manifest {manifest_path!r} has no rows in split(s) {names}; it has {have}")
    return pa.table({
        "row_index": table["row_index"],
        "uri": table["uri"],
        "split": table["split"],
        "media": table["media"],
        "num_frames": pc.fill_null(table["num_frames"], 0).cast(pa.int64()),
        "action_id": pc.fill_null(table["action_id"], -1).cast(pa.int64()),
    })


def probe_size(uris: Sequence[str], tries: int = 8) -> int:
    """Short side of the first decodable video among ``uris`` (for size=None)."""
    from ..data.decode import DecodeError, decode_video

    for uri in list(uris)[:tries]:
        try:
            frames = decode_video(str(uri), [0]).frames
        except DecodeError:
            continue
        return int(min(frames.shape[-3], frames.shape[-2]))
    raise ValueError(f"size=None: none of the first {tries} videos decodes; pass size= explicitly")


def epoch_order(n: int, batch_size: int, seed: int | None, epoch: int) -> np.ndarray:
    """Positions 0..n-1 in the order of one epoch: runs of ``batch_size`` consecutive positions (the last
    run may be shorter), the runs shuffled by ``default_rng([seed, epoch])`` (seed None: fresh randomness).
    """
    runs = math.ceil(n / batch_size)
    rng = np.random.default_rng([int(seed), int(epoch)]) if seed is not None else np.random.default_rng()
    pos = (rng.permutation(runs)[:, None] * batch_size + np.arange(batch_size)).ravel()
    return pos[pos < n]


def stream_blocks(row_index: np.ndarray, batch_size: int, seed: int | None, first_epoch: int, epochs: int):
    """The source of a multi-epoch stream: Arrow blocks of (row_index, epoch) int64, epoch-major, epochs
    ``first_epoch`` .. ``first_epoch + epochs - 1``, each in its :func:`epoch_order`. A block holds whole
    runs of ``batch_size`` rows: one run, or as many as keep the count at most MAX_SOURCE_BLOCKS."""
    import pyarrow as pa

    n = len(row_index)
    runs_per_block = math.ceil(math.ceil(n / batch_size) * epochs / MAX_SOURCE_BLOCKS)
    pos = np.concatenate([epoch_order(n, batch_size, seed, e) for e in range(first_epoch, first_epoch + epochs)])
    epoch = np.repeat(np.arange(first_epoch, first_epoch + epochs, dtype=np.int64), n)
    starts = np.flatnonzero(pos % batch_size == 0)[::runs_per_block]  # every run starts at a multiple
    bounds = [*starts.tolist(), len(pos)]
    rows = np.asarray(row_index, dtype=np.int64)
    return [pa.table({"row_index": rows[pos[a:b]], "epoch": epoch[a:b]}) for a, b in zip(bounds, bounds[1:])]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def clip_dataset(
    manifest_path: str,
    splits: list[str],
    *,
    mode: str = "train",
    clip_len: int = 16,
    num_clips: int | None = None,
    static_k: int = 2,
    size: int | None = None,
    seed: int | None = 0,
    decode_workers: int = 2,
    batch_size: int = 4,
    rejects_path: str | None = None,
    stride: int = 1,
    static_pool: int = DEFAULT_STATIC_POOL,
    num_cpus_per_worker: float = 1.0,
    keep_partial: bool = False,
    epochs: int | None = None,
    first_epoch: int = 0,
):
    """A Ray Dataset of fixed-shape uint8 clip rows decoded from the manifest's ``splits``.

    Rows: ``clips`` uint8 (clip_len, S, S, 3) in mode "train" (one random clip per video; with
    ``num_clips=k``: (k, clip_len, S, S, 3)), or (C, clip_len, S, S, 3) in mode "eval" (C = num_clips,
    default 5, evenly spaced); ``static`` uint8 (static_k, S, S, 3): in train mode static_k distinct
    frames drawn at random from ``static_pool`` evenly spaced ones, in eval mode static_k evenly spaced
    frames; ``action_id`` int64 (-1 = unlabelled); ``row_index`` int64 (position in the manifest).
    S = ``size``: frames are decoded to short side S, then centre-cropped to S x S (None: the short side
    of the first decodable video).

    Train mode is random per epoch and reproducible (rng of [seed, row_index, epoch]; seed=None: fresh
    randomness); the video order is shuffled per epoch at the granularity of ``batch_size`` videos.
    ``epochs=None``: one epoch per execution of the dataset (epoch = Ray Data's execution index; each
    execution starts a new actor pool). ``epochs=E`` (train mode only): one execution streams epochs
    ``first_epoch`` .. ``first_epoch + E - 1`` through ONE actor pool, epoch-major, every good video once
    per epoch, rows tagged with an ``epoch`` int64 column; output order is not preserved, so epochs
    overlap slightly at their boundaries (see the module docstring).
    Decoding runs on ``map_batches(ClipDecoder, compute=ActorPoolStrategy(min_size=1,
    max_size=decode_workers))``, ``batch_size`` videos per call, ``num_cpus_per_worker`` CPUs per actor.
    Bad files are dropped, also files that decode only partly unless ``keep_partial``; see the module
    docstring for rejects (``rejects_path``: a local or shared POSIX path, appended to, or an s3:// / gs:// URI)
    and memory.
    """
    import ray

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if rejects_path and "://" in rejects_path and not rejects_path.startswith("file://") and not is_remote(rejects_path):
        raise ValueError(f"rejects_path must be a POSIX path or an s3:// / gs:// URI, got {rejects_path!r}")
    if rejects_path and not is_remote(rejects_path):
        rejects_path = os.path.abspath(os.path.expanduser(rejects_path.removeprefix("file://")))
    for name, value in (("batch_size", batch_size), ("decode_workers", decode_workers), ("clip_len", clip_len),
                        ("stride", stride), ("static_pool", static_pool)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if static_k < 0 or (mode == "train" and static_k > static_pool):
        raise ValueError(f"static_k must be in [0, static_pool={static_pool}], got {static_k}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1 (or None), got {size}")
    if num_cpus_per_worker <= 0:
        raise ValueError(f"num_cpus_per_worker must be > 0, got {num_cpus_per_worker}")
    if epochs is not None:
        if mode != "train":
            raise ValueError(f"epochs: a multi-epoch stream is for mode 'train' (eval clips do not change "
                             f"between epochs), got mode {mode!r}")
        if not _is_int(epochs) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1 (or None), got {epochs!r}")
    if not _is_int(first_epoch) or first_epoch < 0:
        raise ValueError(f"first_epoch must be an int >= 0, got {first_epoch!r}")
    if first_epoch and epochs is None:
        raise ValueError("first_epoch needs epochs: without it the epoch is Ray Data's execution index")
    table = source_table(manifest_path, splits)
    if size is None:
        size = probe_size(table["uri"].to_pylist())
    decoder_kwargs = dict(mode=mode, clip_len=clip_len, num_clips=num_clips, static_k=static_k, size=size,
                          seed=seed, stride=stride, rejects_path=rejects_path, static_pool=static_pool,
                          keep_partial=keep_partial)
    n = table.num_rows
    if epochs is not None:  # one execution, many epochs: (row_index, epoch) rows, manifest columns looked up
        blocks = stream_blocks(table["row_index"].to_numpy(), batch_size, seed, int(first_epoch), int(epochs))
        ds = ray.data.from_arrow(blocks)
        decoder_kwargs["manifest"] = table
    else:
        num_blocks = min(math.ceil(n / batch_size), MAX_SOURCE_BLOCKS)
        rows_per_block = math.ceil(n / num_blocks)
        blocks = [table.slice(i, rows_per_block) for i in range(0, n, rows_per_block)]
        ds = ray.data.from_arrow(blocks)  # starts or joins Ray (RAY_ADDRESS) when needed, as Ray Data does
    if mode == "train" and epochs is None:
        from ray.data import RandomSeedConfig

        ds = ds.randomize_block_order(seed=RandomSeedConfig(seed=seed, reseed_after_execution=True)
                                      if seed is not None else None)
    ds = ds.map_batches(
        ClipDecoder,
        fn_constructor_kwargs=decoder_kwargs,
        batch_size=batch_size,
        batch_format="numpy",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=decode_workers,
                                           initial_size=decode_workers, max_tasks_in_flight_per_actor=2),
        num_cpus=num_cpus_per_worker,
    )
    return ds


def iter_train_batches(shard, batch_size: int, device=None, *, local_shuffle_buffer_size: int | None = None,
                       prefetch_batches: int = 1) -> Iterator[dict[str, Any]]:
    """Batches of a Ray Train dataset shard (or any Dataset / DataIterator) as dicts of torch tensors:
    clips uint8 (B, T, S, S, 3) (or (B, C, T, ...)), static uint8 (B, K, S, S, 3), action_id and
    row_index int64.

    Policy: ``drop_last=True``. Ray Train splits a dataset with ``streaming_split(equal=True)``, so every
    worker receives the same number of rows; dropping the last partial batch then gives every worker the
    same number of full steps, which collective ops (gradient all-reduce, DeepSpeed) require: a worker
    running one extra step would hang the others. Each worker skips fewer than ``batch_size`` rows per
    execution (per epoch, or once for a whole multi-epoch stream), and which rows varies with the order.
    A multi-epoch stream is read through ONE such iterator for the whole run (online_source.StreamEpochs cuts
    it into epochs); each new iterator over a Ray Train shard is a new execution.
    device: None keeps the uint8 tensors on the CPU (augment there, then move); otherwise passed on
    (e.g. "cuda", or "auto" for the Ray Train worker's device).
    """
    yield from shard.iter_torch_batches(
        batch_size=batch_size,
        drop_last=True,
        device=device if device is not None else "cpu",
        prefetch_batches=prefetch_batches,
        local_shuffle_buffer_size=local_shuffle_buffer_size,
    )
