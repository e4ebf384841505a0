"""Check every file of a manifest before any training: bad input is dropped with its reason,
counted, and written to a rejects file, never silently lost and never a crash.

Each row is probed by decoding ALL its frames (damage can sit anywhere; headers lie about counts)
while converting only the first and last to RGB. Files that decode partially (typically
truncated) are rejected by default (``strict``); with ``strict=False`` they pass with a warning.

Probing runs in a process pool: a decoder that segfaults on a hostile file takes down only its
worker. Rows in flight during such a crash are retried one at a time, which pins the culprit,
rejected as "corrupt".
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from ..progress import Progress
from .decode import REASONS, DecodeError, check_row, default_min_frames, probe_video
from .manifest import _filesystem, read_manifest

REJECT_COLUMNS = ("row", "uri", "reason", "detail")
CRASH_DETAIL = "the decoder process crashed on this file"


@dataclass
class ValidationReport:
    manifest: str
    total: int = 0
    ok: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count (every reason present)
    warned: int = 0  # accepted rows that carry warnings
    padded: int = 0  # accepted videos shorter than a clip (padded with their last frame when clipped)
    rejects: list[dict[str, Any]] = field(default_factory=list)  # row, uri, reason, detail
    warnings: list[dict[str, Any]] = field(default_factory=list)  # row, uri, warnings
    rejects_path: str | None = None
    seconds: float = 0.0

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "num_rejected": self.num_rejected}

    def summary(self, max_listed: int = 20) -> str:
        lines = [
            f"validated {self.total} row(s) of {self.manifest} in {self.seconds:.1f} s: "
            f"{self.ok} ok, {self.num_rejected} rejected, {self.warned} with warnings ({self.padded} padded: "
            "shorter than a clip)",
            f"  {'reason':<12}{'count':>7}",
        ]
        lines += [f"  {reason:<12}{self.rejected.get(reason, 0):>7}" for reason in REASONS]
        for r in self.rejects[:max_listed]:
            lines.append(f"  rejected  {r['reason']:<11} {r['uri']}  {r['detail']}".rstrip())
        if len(self.rejects) > max_listed:
            lines.append(f"  ... and {len(self.rejects) - max_listed} more")
        if self.rejects_path:
            lines.append(f"rejects written to {self.rejects_path}")
        return "\n".join(lines)


def probe_row(item: tuple) -> dict[str, Any]:
    """Probe one file against its row ``(index, uri, strict, expected frames, media, clip_len, min_frames)``;
    never raises (any failure becomes a reject record). A file wrong for its row (an image in a video row, a
    video in an image row, a video shorter than ``min_frames``) is a reject; a video shorter than a clip but
    not too short is accepted with a warning, as it will be padded."""
    index, uri, strict, expected, media, clip_len, min_frames = item
    out: dict[str, Any] = {"row": index, "uri": uri, "reason": None, "detail": "", "warnings": [], "padded": False}
    try:
        video = probe_video(uri)
        warnings = list(video.warnings)
        if expected and not video.is_image and expected != video.num_frames:
            warnings.append(f"the manifest says {expected} frames, the file has {video.num_frames}")
        if video.problem and strict:  # damage says more than the length it left
            return {**out, "reason": video.problem, "detail": "; ".join(warnings) or video.problem}
        check_row(uri, media, video.is_image, video.num_frames, min_frames, video.problem)
    except DecodeError as exc:
        return {**out, "reason": exc.reason, "detail": exc.detail}
    except Exception as exc:  # an unexpected library error must not stop the other rows
        return {**out, "reason": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    padded = not video.is_image and video.num_frames < clip_len
    if padded:
        warnings.append(f"padded: {video.num_frames} frame(s), shorter than a clip of {clip_len}; its last frame "
                        "is repeated")
    return {**out, "warnings": warnings, "num_frames": video.num_frames, "fps": video.fps, "padded": padded}


def _executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    # spawn: forking a process that already runs pyarrow/Ray threads can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def pool_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int,
    on_result: Callable[[Any, Any], None],
    on_crash: Callable[[Any], None],
    kind: str = "process",
) -> None:
    """Apply ``fn`` to items in a pool with bounded in-flight work, surviving worker crashes.

    After a crash every item that was in flight is retried alone in a fresh one-worker pool;
    an item that crashes alone is passed to ``on_crash``.
    """
    queue, suspects = deque(items), deque()
    while queue or suspects:
        isolate = bool(suspects)
        source, limit = (suspects, 1) if isolate else (queue, 4 * workers)
        with _executor(kind, 1 if isolate else workers) as pool:
            inflight: dict[Any, Any] = {}
            broken = False
            while (source or inflight) and not broken:
                while source and len(inflight) < limit:
                    item = source.popleft()
                    inflight[pool.submit(fn, item)] = item
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    item = inflight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken = True
                        (on_crash if isolate else suspects.append)(item)
                        continue
                    on_result(item, result)
            suspects.extend(inflight.values())  # in flight when the pool broke: not yet known


def write_rejects(path: str, rejects: list[dict[str, Any]]) -> None:
    """Rejects as Parquet (path ends with .parquet) or JSON lines; local or remote path."""
    rows = [{c: r.get(c) for c in REJECT_COLUMNS} for r in rejects]
    fs, p = _filesystem(path)
    if fs is None:
        os.makedirs(os.path.dirname(os.path.abspath(p)) or ".", exist_ok=True)
    if p.endswith(".parquet"):
        schema = pa.schema([("row", pa.int64()), ("uri", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), p, filesystem=fs)
        return
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if fs is None:
        with open(p, "wb") as f:
            f.write(text)
    else:
        with fs.open_output_stream(p) as f:
            f.write(text)


def read_rejects(path: str) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def default_rejects_path(manifest_path: str) -> str:
    """``<manifest>.rejects.jsonl`` beside a local manifest; in the working directory for a remote one."""
    base = os.path.basename(manifest_path.rstrip("/")) if "://" in manifest_path else manifest_path
    stem = base[: -len(".parquet")] if base.endswith(".parquet") else base
    return stem + ".rejects.jsonl"


def validate_manifest(
    manifest_path: str,
    rejects_path: str | None = None,
    workers: int | None = None,
    strict: bool = True,
    executor: str = "process",
    progress: bool | None = None,
    clip_len: int = 16,
    min_frames: int | None = None,
) -> ValidationReport:
    """Probe every row of a manifest; return counts per reason and write the rejects file.

    workers: parallel probes (default: CPU count); 1 runs in this process.
    strict: reject files that decode only partially (truncated / corrupt after some frames).
    executor: "process" (survives decoder crashes) or "thread".
    progress: a progress line on stderr; default only for manifests of 200+ rows.
    clip_len, min_frames: videos shorter than ``min_frames`` (default: half a clip) are rejected as too_short,
    and shorter than a clip they are accepted as padded (a warning).
    """
    start = time.monotonic()
    manifest = read_manifest(manifest_path)
    uris = manifest.table["uri"].to_pylist()
    counts = manifest.table["num_frames"].to_pylist()
    media = manifest.table["media"].to_pylist()
    min_frames = min_frames if min_frames is not None else default_min_frames(clip_len)
    items = [(i, u, strict, counts[i], media[i], clip_len, min_frames) for i, u in enumerate(uris)]
    report = ValidationReport(manifest=str(manifest_path), total=len(items))
    reasons: Counter[str] = Counter()
    bar = Progress(len(items), "validate", unit="row", enabled=len(items) >= 200 if progress is None else progress)
    done = 0

    def record(item: Any, result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if result["reason"]:
            reasons[result["reason"]] += 1
            report.rejects.append({c: result[c] for c in REJECT_COLUMNS})
        else:
            report.ok += 1
            report.padded += bool(result.get("padded"))
            if result["warnings"]:
                report.warned += 1
                report.warnings.append({"row": result["row"], "uri": result["uri"], "warnings": result["warnings"]})
        bar.update(1, rejected=sum(reasons.values()))

    def crashed(item: Any) -> None:
        record(item, {"row": item[0], "uri": item[1], "reason": "corrupt", "detail": CRASH_DETAIL, "warnings": []})

    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(items) <= 2:  # a pool costs more than it saves
        for item in items:
            record(item, probe_row(item))
    else:
        pool_map(probe_row, items, workers, record, crashed, kind=executor)
    bar.close()

    report.rejects.sort(key=lambda r: r["row"])
    report.warnings.sort(key=lambda r: r["row"])
    report.rejected = {reason: reasons.get(reason, 0) for reason in REASONS}
    if rejects_path:
        write_rejects(rejects_path, report.rejects)
        report.rejects_path = rejects_path
    report.seconds = time.monotonic() - start
    return report
