"""Decode videos and images into uint8 RGB frames with PyAV: the planned frames only, seeking to keyframes.

Design (why):
- The indices of every clip (and static frame) of a video are planned first and gathered in one go.
  Only requested frames are converted to RGB (and resized on the fly by libswscale, so hi-res videos
  never hold full-resolution RGB frames), and decoding stops after the last needed frame.
- Frames far into a file are reached by SEEKING (:func:`_seek_decode`): the packets are demuxed once,
  without decoding, into an index (presentation timestamps -> frame numbers, keyframes); each run of
  wanted frames is decoded from the nearest keyframe at or before it. Frame numbers come from the
  index, and every decoded frame is checked against it (its timestamp must be the next expected one),
  so a clip is frame-accurate: the same pixels a decode from the first frame gives. Anything the index
  cannot vouch for (packets without timestamps, duplicate timestamps, no keyframe flags, a damaged
  container, a seek that lands past its keyframe, a gap in the decoded frames) falls back to one
  sequential pass from the start, as does a clip that ends within the first ``SEEK_MIN_FRAME`` frames.
- Container headers lie (AVI headers, VFR files, truncated files). A header frame count is only a
  hint for planning: the count is verified from the stream itself, by decoding to the end or, when
  decoding stopped early, by demuxing (not decoding) the remaining packets. If the verified count
  differs from the planned one, clips are re-planned and, only then, the file is decoded a second time.
  A count the caller trusts (the manifest's num_frames, counted by ``validate``) skips verification.
- Frames come out upright: the display matrix (rotation and mirroring) is applied.
- Frames are numbered in decode (presentation) order, so variable-frame-rate videos are sampled by
  frame, not by time; the mean fps is measured from the frame timestamps.
- Failures raise :class:`DecodeError` with a reason from a fixed vocabulary (:data:`REASONS`).
  A file that yields SOME frames before failing (typically truncated) is not an error here: what
  decoded is returned, with ``problem`` set to the reason and a line in ``warnings``. ``validate``
  rejects such files by default; a training job may keep them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import av
import numpy as np

from .sampling import Indices, RngLike, plan_clips, static_frame_indices

REASONS: tuple[str, ...] = ("missing", "empty", "not_video", "corrupt", "truncated", "unreadable", "no_frames",
                            "wrong_media", "too_short")

# Errors a broken file can raise while being demuxed/decoded (pyarrow read errors are OSErrors).
_MEDIA_ERRORS = (av.FFmpegError, OSError, EOFError)


class DecodeError(Exception):
    """A file that cannot be turned into frames; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, uri: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown decode failure reason {reason!r}; expected one of {REASONS}")
        super().__init__(f"{reason}: {uri}" + (f" ({detail})" if detail else ""))
        self.reason, self.uri, self.detail = reason, uri, detail

    def __reduce__(self):  # keep the fields across process pools
        return DecodeError, (self.reason, self.uri, self.detail)


@dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8, indices.shape + (H, W, 3), upright RGB
    indices: np.ndarray  # int64 frame index of each returned frame (after clamping to the end)
    num_frames: int  # frames in the stream; see num_frames_source
    num_frames_source: str  # "decoded" (exact), "packets" (rest demuxed), "trusted" (caller), "header"
    fps: float  # mean fps from timestamps (0.0 for images / unknown)
    padded: int = 0  # requested positions past the last frame, filled with the last frame
    rotation: int = 0  # counter-clockwise degrees of the applied display matrix
    mirrored: bool = False  # the display matrix also mirrored the picture
    header_frames: int | None = None  # what the container claimed (a hint only)
    is_image: bool = False
    problem: str | None = None  # reason of a non-fatal failure (frames are partial)
    warnings: list[str] = field(default_factory=list)
    seeks: int = 0  # keyframe seeks made (0: one pass from the first frame)


def default_min_frames(clip_len: int) -> int:
    """``data.min_frames`` when unset: half a clip. Shorter videos are rejected; longer ones shorter than a
    clip are padded with their last frame (and counted as padded)."""
    return max(1, clip_len // 2)


def check_row(uri: str, media: str | None, is_image: bool, num_frames: int, min_frames: int | None,
              problem: str | None = None) -> None:
    """A file that decodes but is wrong for its manifest row raises DecodeError: a video row holding a still
    image or an image row holding a video ("wrong_media"), or a video with fewer than ``min_frames`` frames
    ("too_short"; not for a damaged file, whose ``problem`` (truncated, corrupt) says more). ``media`` None
    (unknown) checks only the length of videos."""
    if media == "video" and is_image:
        raise DecodeError("wrong_media", uri, "the row says media=video but the file is a still image")
    if media == "image" and not is_image:
        raise DecodeError("wrong_media", uri, f"the row says media=image but the file is a video of {num_frames} "
                          "frames")
    if not is_image and not problem and min_frames and num_frames < min_frames:
        raise DecodeError("too_short", uri, f"{num_frames} frame(s), fewer than data.min_frames={min_frames}")


# --------------------------------------------------------------------------- opening files


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def remote_filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) of an s3:// / gs:// / hdfs:// URI (a seam for tests)."""
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)


@contextlib.contextmanager
def open_binary(uri: str) -> Iterator[tuple[IO[bytes], int]]:
    """A seekable binary file object and its size; remote URIs go through pyarrow.fs.

    Raises DecodeError("missing" | "unreadable" | "empty") before any decoding is attempted.
    """
    if is_remote(uri):
        from pyarrow import fs as pafs

        try:
            fs, path = remote_filesystem(uri)
            info = fs.get_file_info(path)
        except Exception as exc:  # unknown scheme, credentials, network: nothing was read
            raise DecodeError("unreadable", uri, f"{type(exc).__name__}: {exc}") from None
        if info.type == pafs.FileType.NotFound:
            raise DecodeError("missing", uri, "no such object")
        if info.type != pafs.FileType.File:
            raise DecodeError("unreadable", uri, "not a regular file")
        size = int(info.size or 0)
        opener: Callable[[], IO[bytes]] = lambda: fs.open_input_file(path)  # noqa: E731
    else:
        path = uri.removeprefix("file://")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DecodeError("missing", uri, "no such file") from None
        except OSError as exc:
            raise DecodeError("unreadable", uri, f"{type(exc).__name__}: {exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError("unreadable", uri, "not a regular file")
        size = st.st_size
        opener = lambda: open(path, "rb")  # noqa: E731
    if size == 0:
        raise DecodeError("empty", uri, "the file has 0 bytes")
    try:
        f = opener()
    except OSError as exc:
        raise DecodeError("unreadable", uri, f"{type(exc).__name__}: {exc}") from None
    try:
        yield f, size
    finally:
        f.close()


# --------------------------------------------------------------------------- classifying bad files

_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"moof", b"styp"}
_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"),  # AVI (and WebP)
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
    (0, b"\x89PNG"),
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"GIF8"),
    (0, b"BM"),
)


def looks_like_media(head: bytes) -> bool:
    """Whether the first bytes carry the signature of a known video/image container."""
    if head[4:8] in _ISO_BOXES or (head[:1] == b"\x47" and head[188:189] == b"\x47"):
        return True
    return any(head[o : o + len(m)] == m for o, m in _MAGIC)


def _iso_problem(f: IO[bytes], size: int) -> str | None:
    """Walk the top-level ISO-BMFF boxes (mp4/mov): a box running past EOF, or no 'moov' box
    (muxers write it last by default), means the file was cut; nonsense box headers mean corruption."""
    off, seen = 0, set()
    while off < size:
        f.seek(off)
        h = f.read(16)
        if len(h) < 8:
            return "truncated"
        box, kind = struct.unpack(">I", h[:4])[0], h[4:8]
        if not all(32 <= ch < 127 for ch in kind):
            return "corrupt"
        if box == 1:
            if len(h) < 16:
                return "truncated"
            box = struct.unpack(">Q", h[8:16])[0]
        elif box == 0:
            box = size - off
        if box < 8:
            return "corrupt"
        if off + box > size:
            return "truncated"
        seen.add(kind)
        off += box
    return None if b"moov" in seen or b"moof" in seen else "truncated"


def _ebml_vint(b: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, next position, all-ones) of an EBML variable-length integer at ``pos``."""
    first = b[pos]
    length = 9 - first.bit_length()
    if length > 8 or pos + length > len(b):
        raise ValueError("bad EBML vint")
    raw = int.from_bytes(b[pos : pos + length], "big")
    value = raw if keep_marker else raw & ((1 << (7 * length)) - 1)
    return value, pos + length, value == (1 << (7 * length)) - 1


def _ebml_problem(f: IO[bytes], size: int) -> str | None:
    """Matroska/WebM: the Segment element's declared size must fit in the file."""
    f.seek(0)
    b = f.read(4096)
    try:
        _, pos, _ = _ebml_vint(b, 0, True)  # EBML header id
        hsize, pos, _ = _ebml_vint(b, pos, False)
        pos += hsize
        seg_id, pos, _ = _ebml_vint(b, pos, True)
        if seg_id != 0x18538067:
            return "corrupt"
        seg_size, pos, unknown = _ebml_vint(b, pos, False)
    except (ValueError, IndexError):
        return "truncated" if len(b) < 64 else "corrupt"
    return None if unknown or pos + seg_size <= size else "truncated"


def container_problem(f: IO[bytes], size: int) -> str | None:
    """'truncated' / 'corrupt' when the container's own structure says so, else None.

    Only reads a few headers. Needed because a cut WebM or MKV decodes silently to fewer frames.
    """
    f.seek(0)
    head = f.read(12)
    if head[4:8] in _ISO_BOXES:
        return _iso_problem(f, size)
    if head[:4] == b"RIFF" and len(head) >= 8:
        return "truncated" if struct.unpack("<I", head[4:8])[0] + 8 > size else None
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _ebml_problem(f, size)
    return None


def _classify_open_failure(f: IO[bytes], size: int) -> str:
    f.seek(0)
    if not looks_like_media(f.read(512)):
        return "not_video"
    return container_problem(f, size) or "corrupt"


# --------------------------------------------------------------------------- frames


def _display_transform(frame: av.VideoFrame) -> tuple[Callable[[np.ndarray], np.ndarray], int, bool, str | None]:
    """(function making an (H, W, 3) frame upright, ccw degrees, mirrored, warning).

    The display matrix maps source (x, y) to display (a*x + c*y, b*x + d*y) with y pointing down;
    for axis-aligned matrices (all eight EXIF orientations) that is a transpose and/or flips.
    ``frame.rotation`` alone is not enough: it reads a pure mirror as a 180 degree turn.
    """
    matrix = next((bytes(sd) for sd in frame.side_data if getattr(sd.type, "name", "") == "DISPLAYMATRIX"), None)
    if matrix is None or len(matrix) < 36:
        return (lambda x: x), 0, False, None
    a, b, _, c, d = (np.frombuffer(matrix, dtype=np.int32)[:5] / 65536.0).tolist()
    sign = [int(np.rint(v)) for v in (a, b, c, d)]
    a, b, c, d = sign
    axis_aligned = sorted(map(abs, sign)) == [0, 0, 1, 1] and (a == 0) == (d == 0)
    if not axis_aligned:
        return (lambda x: x), 0, False, "display matrix with a non right-angle rotation ignored"
    mirrored = a * d - b * c < 0
    # Counter-clockwise angle once the mirror (a negated first column) is undone, in (-180, 180].
    rotation = round(-np.degrees(np.arctan2(b, -a if mirrored else a)))
    rotation = 180 if rotation == -180 else rotation
    if a == 0:  # x' depends on y: transpose, then flip the axes whose sign is negative

        def transform(x: np.ndarray) -> np.ndarray:
            x = x.swapaxes(0, 1)
            x = x[::-1] if b < 0 else x
            return np.ascontiguousarray(x[:, ::-1] if c < 0 else x)

    else:

        def transform(x: np.ndarray) -> np.ndarray:
            x = x[::-1] if d < 0 else x
            return np.ascontiguousarray(x[:, ::-1] if a < 0 else x)

    return transform, rotation, mirrored, None


def short_side_size(width: int, height: int, short: int | None) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is ``short`` (unchanged when None)."""
    if not short:
        return width, height
    scale = short / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(frame: av.VideoFrame, size: int | None) -> np.ndarray:
    w, h = short_side_size(frame.width, frame.height, size)
    if (w, h) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    # AREA averages when shrinking (no aliasing); bilinear when enlarging.
    interp = "AREA" if w < frame.width else "BILINEAR"
    return frame.to_ndarray(width=w, height=h, format="rgb24", interpolation=interp)


def _header_frames(container: Any, stream: Any) -> int | None:
    """The container's claim: the frame count, else duration * average rate. A hint only."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration and rate:
        return max(1, round(container.duration / av.time_base * float(rate)))
    return None


@dataclass
class _Scan:
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    tail: deque = field(default_factory=deque)  # (index, raw frame) of the last frames
    count: int = 0  # frames decoded
    packets: int = 0  # non-empty packets demuxed (a frame count when decoding stopped early)
    reached_end: bool = False
    error: str | None = None
    t_min: float | None = None
    t_max: float | None = None
    timed: int = 0
    transform: Callable[[np.ndarray], np.ndarray] = lambda x: x
    rotation: int = 0
    mirrored: bool = False
    warnings: list[str] = field(default_factory=list)


def _scan(container: Any, stream: Any, want: set[int] | None, stop_after: int | None, size: int | None,
          count_rest: bool, keep_tail: int) -> _Scan:
    """One sequential pass. ``want`` None keeps every frame; decoding stops after frame ``stop_after``
    (None: decode to the end); ``count_rest`` then demuxes the rest to count its packets."""
    s = _Scan(tail=deque(maxlen=max(keep_tail, 1)))
    decoding = True
    try:
        for packet in container.demux(stream):
            if packet.size:
                s.packets += 1
            if not decoding:
                if not count_rest:
                    break
                continue
            for frame in stream.decode(packet):
                i = s.count
                s.count += 1
                if i == 0:
                    s.transform, s.rotation, s.mirrored, warning = _display_transform(frame)
                    s.warnings += [warning] if warning else []
                if frame.time is not None:
                    t = float(frame.time)
                    s.t_min = t if s.t_min is None else min(s.t_min, t)
                    s.t_max = t if s.t_max is None else max(s.t_max, t)
                    s.timed += 1
                if want is None or i in want:
                    s.frames[i] = s.transform(_to_rgb(frame, size))
                if keep_tail:
                    s.tail.append((i, frame))
                if stop_after is not None and i >= stop_after:
                    decoding = False
                    break
        s.reached_end = decoding
    except _MEDIA_ERRORS as exc:
        s.error = f"{type(exc).__name__}: {exc}"
    return s


def _fps(s: _Scan, nominal: float) -> float:
    """Mean rate from the frame timestamps; the stream's nominal rate when there are none."""
    if s.timed > 1 and s.t_max is not None and s.t_min is not None and s.t_max > s.t_min:
        return (s.timed - 1) / (s.t_max - s.t_min)
    return nominal


def _open_container(f: IO[bytes], size: int, uri: str) -> Any:
    try:
        return av.open(f, "r")
    except _MEDIA_ERRORS as exc:
        raise DecodeError(_classify_open_failure(f, size), uri, f"{type(exc).__name__}: {exc}") from None


def _video_stream(container: Any, uri: str) -> Any:
    if container.streams.video:
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError("unreadable", uri, f"no decoder for codec {stream.codec.name if stream.codec else '?'}")
        return stream
    if len(container.streams):  # e.g. audio only
        raise DecodeError("not_video", uri, f"no video stream in {container.format.name}")
    raise DecodeError("corrupt", uri, f"{container.format.name} container without any stream")


IndexPlan = Callable[[int], "np.ndarray | Sequence[int]"]

# A plan whose last frame comes before this is decoded in one pass from the start: building the packet
# index (demuxing the whole file) would cost more than the frames a seek could skip.
SEEK_MIN_FRAME = 48
# Within a plan, seek again only to skip more than this many frames (a seek restarts the decoder).
SEEK_MIN_SKIP = 8


@dataclass
class _PacketIndex:
    pts: np.ndarray  # int64 presentation timestamps in frame order: frame i has pts[i]
    rank: dict[int, int]  # pts -> frame index
    keys: np.ndarray  # int64 frame indices of the keyframes, ascending
    key_targets: list[tuple[int, ...]]  # per keyframe, the timestamps to try seeking to (pts, then dts)


def _packet_index(container: Any, stream: Any) -> _PacketIndex | None:
    """Demux (not decode) every packet of ``stream``: the frame numbering a sequential decode gives,
    and the keyframes. None when the packets cannot vouch for it (see the module doc)."""
    pts: list[int] = []
    dts: list[int] = []
    key: list[bool] = []
    try:
        for p in container.demux(stream):
            if not p.size:
                if p.pts is None and p.dts is None:
                    continue  # the empty packet PyAV yields at the end of the stream
                return None  # an empty packet that stands for a (dropped) frame
            if p.pts is None:
                return None
            pts.append(int(p.pts))
            dts.append(int(p.dts) if p.dts is not None else int(p.pts))
            key.append(bool(p.is_keyframe))
    except _MEDIA_ERRORS:
        return None
    if not pts or not any(key):
        return None
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    sorted_pts = np.asarray(pts, np.int64)[order]
    if np.any(np.diff(sorted_pts) == 0):
        return None
    rank = np.empty(len(pts), np.int64)
    rank[order] = np.arange(len(pts))
    key_packets = sorted(np.flatnonzero(key).tolist(), key=lambda i: rank[i])
    targets = [tuple(dict.fromkeys((pts[i], min(dts[i], pts[i])))) for i in key_packets]
    return _PacketIndex(sorted_pts, dict(zip(sorted_pts.tolist(), range(len(pts)))),
                        rank[key_packets].astype(np.int64), targets)


def _runs(want: Sequence[int], keys: np.ndarray) -> list[tuple[int, list[int]]]:
    """Wanted frames (ascending) grouped into (keyframe position in ``keys``, frames) runs: a new run,
    reached by a seek, starts wherever a keyframe lies more than ``SEEK_MIN_SKIP`` frames after the
    previous wanted frame (decoding on from there would cost more than starting at that keyframe)."""
    runs: list[tuple[int, list[int]]] = []
    for w in want:
        k = int(np.searchsorted(keys, w, side="right")) - 1
        if runs and (k < 0 or keys[k] <= runs[-1][1][-1] + SEEK_MIN_SKIP):
            runs[-1][1].append(w)
        else:
            runs.append((max(k, 0), [w]))
    return runs


class _SeekFailed(Exception):
    """The seek path cannot vouch for frame numbers here: fall back to one sequential pass."""


def _decode_run(container: Any, stream: Any, index: _PacketIndex, key_pos: int, frames_wanted: list[int],
                want: set[int], out: dict[int, np.ndarray], size: int | None, display: list[Any]) -> int:
    """Seek to keyframe ``key_pos`` and decode until the last of ``frames_wanted``; returns the seeks made.

    The frames between the keyframe and the first wanted one (the pre-roll) are only decoded for their
    references: the decoder skips non-reference frames there. From the first wanted frame on, every frame
    is decoded and must carry the next frame number of the index."""
    first, last = frames_wanted[0], frames_wanted[-1]
    if index.keys[key_pos] > first:
        raise _SeekFailed(f"no keyframe at or before frame {first}")
    ctx = stream.codec_context
    try:
        for attempt, target in enumerate(index.key_targets[key_pos]):
            container.seek(int(target), backward=True, any_frame=False, stream=stream)
            started: int | None = None
            skipping = False
            expect = first
            for packet in container.demux(stream):
                if started is None:
                    if not packet.size:
                        break
                    if not packet.is_keyframe:
                        continue  # a demuxer that resyncs before a keyframe: never feed the decoder mid-GOP
                    started = index.rank.get(int(packet.pts)) if packet.pts is not None else None
                    if started is None:
                        raise _SeekFailed("a packet after the seek is not in the index")
                    if started > first:
                        break  # landed past the keyframe: try the next target (its dts), else give up
                    skipping = started < first
                    ctx.skip_frame = "NONREF" if skipping else "DEFAULT"
                if skipping:
                    r = index.rank.get(int(packet.pts)) if packet.pts is not None else None
                    if r is None or r >= first:  # the first packet shown from ``first`` on: decode all again
                        ctx.skip_frame, skipping = "DEFAULT", False
                for frame in stream.decode(packet):
                    r = index.rank.get(int(frame.pts)) if frame.pts is not None else None
                    if r is None:
                        raise _SeekFailed("a decoded frame has no timestamp of the index")
                    if r < first:
                        continue  # pre-roll, or a leading picture of an open GOP shown before its keyframe
                    if r != expect:
                        raise _SeekFailed(f"decoded frame {r} where frame {expect} was expected")
                    expect += 1
                    if r in want:
                        if not display:  # (transform, rotation, mirrored, warning) of the display matrix
                            display.extend(_display_transform(frame))
                        out[r] = display[0](_to_rgb(frame, size))
                    if r >= last:
                        return attempt + 1
            if started is not None and started <= first:
                raise _SeekFailed(f"the stream ended at frame {expect - 1}, before frame {last}")
        raise _SeekFailed(f"seeking did not land at or before frame {first}")
    finally:
        ctx.skip_frame = "DEFAULT"


def _seek_decode(container: Any, stream: Any, f: IO[bytes], fsize: int, wanted: np.ndarray,
                 plan: IndexPlan | None, n_plan: int | None, size: int | None, num_frames: int | None,
                 header: int | None, nominal_fps: float) -> tuple[DecodedVideo | None, np.ndarray, int | None]:
    """The frames ``wanted`` by seeking to keyframes (module doc). Returns (video, wanted, n_plan); video is
    None when the sequential pass must do it, with ``wanted`` re-planned if the index found another count."""
    index = _packet_index(container, stream)
    if index is None or container_problem(f, fsize):
        return None, wanted, n_plan
    n = len(index.pts)
    if plan is not None and n != n_plan:  # the header (or the caller) was wrong: plan on the true count
        wanted, n_plan = np.asarray(plan(n), dtype=np.int64), n
    clamped = np.minimum(wanted, n - 1)
    want = sorted(set(clamped.ravel().tolist()))
    frames: dict[int, np.ndarray] = {}
    display: list[Any] = []  # every decoded frame carries the stream's display matrix
    seeks = 0
    try:
        for key_pos, run in _runs(want, index.keys):
            seeks += _decode_run(container, stream, index, key_pos, run, set(run), frames, size, display)
    except (_SeekFailed, *_MEDIA_ERRORS):
        return None, wanted, n_plan
    _, rotation, mirrored, warning = display
    warnings: list[str] = [warning] if warning else []
    source = "trusted" if num_frames and num_frames == n else "packets"
    if num_frames and n != num_frames:
        warnings.append(f"frame count: the caller said {num_frames}, the stream has {n}")
    elif not num_frames and header is not None and n != header:
        warnings.append(f"frame count: the header claims {header}, the stream has {n}")
    span = float((index.pts[-1] - index.pts[0]) * stream.time_base) if n > 1 and stream.time_base else 0.0
    stacked = np.stack([frames[i] for i in clamped.ravel().tolist()])
    return DecodedVideo(
        frames=stacked.reshape(clamped.shape + stacked.shape[1:]),
        indices=clamped,
        num_frames=n,
        num_frames_source=source,
        fps=(n - 1) / span if span > 0 else nominal_fps,
        padded=int((wanted > n - 1).sum()),
        rotation=rotation,
        mirrored=mirrored,
        header_frames=header,
        warnings=warnings,
        seeks=seeks,
    ), wanted, n_plan


def decode_video(
    uri: str,
    indices: np.ndarray | Sequence[int] | IndexPlan | None = None,
    *,
    size: int | None = None,
    num_frames: int | None = None,
    seek: bool = True,
) -> DecodedVideo:
    """Decode the frames ``indices`` of a video (or image), seeking to keyframes where that saves work.

    indices: None = every frame; an array of frame indices of any shape (repeats allowed; negative
      ones count from the end and make the whole file decode); or a plan ``f(n) -> indices`` called
      with the best known frame count, re-called if the stream turns out to hold a different count.
    size: resize so that the short side is ``size`` pixels (done while converting, per frame).
    num_frames: a frame count the caller trusts (skips verifying the header's; the seek path counts the
      packets anyway and re-plans when they disagree).
    seek: False decodes in one sequential pass from the first frame (the seek path gives the same frames).
    Indices past the last frame are clamped to it and counted in ``padded``.
    """
    plan = indices if callable(indices) else None
    with open_binary(uri) as (f, fsize):
        container = _open_container(f, fsize, uri)
        try:
            stream = _video_stream(container, uri)
            is_image = container.format.name.endswith("_pipe") or container.format.name == "image2"
            header = 1 if is_image else _header_frames(container, stream)
            nominal_fps = float(stream.average_rate or stream.guessed_rate or 0.0)  # read before close
            n_plan = num_frames or header
            if plan is not None and n_plan is None:  # no hint at all (raw streams): count packets first
                n_plan = max(1, sum(1 for p in container.demux(stream) if p.size))
                container.close()  # raw streams cannot seek back: reopen
                f.seek(0)
                container = _open_container(f, fsize, uri)
                stream = container.streams.video[0]
            wanted = None if indices is None else np.asarray(plan(n_plan) if plan else indices, dtype=np.int64)
            negative = 0 if wanted is None else int(-min(wanted.min(initial=0), 0))
            want = None if wanted is None else set(wanted[wanted >= 0].tolist())
            stop = None if wanted is None or negative or not want else max(want)
            verify = plan is not None and num_frames is None
            raw = header is None and not num_frames
            if seek and want and not negative and not is_image and not raw and max(want) >= SEEK_MIN_FRAME:
                video, wanted, n_plan = _seek_decode(container, stream, f, fsize, wanted, plan, n_plan, size,
                                                     num_frames, header, nominal_fps)
                if video is not None:
                    return video
                want = set(wanted[wanted >= 0].tolist())  # re-planned if the index counted other frames
                stop = max(want) if want else None
                container.close()  # start again from the first byte for the sequential pass
                f.seek(0)
                container = _open_container(f, fsize, uri)
                stream = container.streams.video[0]
            s = _scan(container, stream, want, stop, size, count_rest=verify, keep_tail=max(negative, 1))
            problem = container_problem(f, fsize) if (s.reached_end or s.error or not s.count) else None
            if problem == "corrupt" and s.reached_end and s.count:
                # Every frame decoded: odd bytes after the media data are not worth dropping the file.
                s.warnings.append("container structure looks damaged after the last frame")
                problem = None
        finally:
            container.close()

    if s.error or problem or not s.count:
        reason = problem or ("corrupt" if s.error else "no_frames")
        if not s.count:
            raise DecodeError(reason, uri, s.error or "not one frame could be decoded")
        s.warnings.append(f"{reason}: decoded {s.count} frame(s) then stopped" + (f" ({s.error})" if s.error else ""))
    else:
        reason = None

    if s.reached_end or s.error:
        n, source = s.count, "decoded"
    elif verify:
        n, source = max(s.count, s.packets), "packets"
    elif num_frames:
        n, source = num_frames, "trusted"
    else:
        n, source = max(s.count, header or 0), "header"
    if source in ("decoded", "packets") and not is_image:
        if num_frames and n != num_frames:
            s.warnings.append(f"frame count: the caller said {num_frames}, the stream has {n}")
        elif header is not None and n != header:
            s.warnings.append(f"frame count: the header claims {header}, the stream has {n}")

    if plan is not None and n != n_plan and not is_image:
        # Headers lied: re-plan on the true count; decode again only if frames are missing.
        replanned = np.asarray(plan(n), dtype=np.int64)
        if not set(replanned.ravel().tolist()) <= s.frames.keys():
            again = decode_video(uri, replanned, size=size, num_frames=n)
            again.warnings = s.warnings + [w for w in again.warnings if w not in s.warnings]
            again.problem = again.problem or reason
            again.num_frames_source = source
            return again
        wanted = replanned

    last = s.count - 1
    if wanted is None:
        wanted = np.arange(s.count, dtype=np.int64)
    resolved = np.where(wanted < 0, wanted + s.count, wanted)
    clamped = np.clip(resolved, 0, last)
    needed = set(clamped.ravel().tolist())
    for i, raw in s.tail:  # frames only known once the end was reached (negative / past-the-end)
        if i in needed and i not in s.frames:
            s.frames[i] = s.transform(_to_rgb(raw, size))
    frames = np.stack([s.frames[i] for i in clamped.ravel().tolist()]) if clamped.size else np.zeros((0, 0, 0, 3), np.uint8)
    return DecodedVideo(
        frames=frames.reshape(clamped.shape + frames.shape[1:]),
        indices=clamped,
        num_frames=1 if is_image else n,
        num_frames_source=source,
        fps=0.0 if is_image else _fps(s, nominal_fps),
        padded=int((resolved > last).sum()),
        rotation=s.rotation,
        mirrored=s.mirrored,
        header_frames=None if is_image else header,
        is_image=is_image,
        problem=reason,
        warnings=s.warnings,
    )


def probe_video(uri: str, size: int | None = None) -> DecodedVideo:
    """Decode every frame (finds damage anywhere), converting only the first and the last."""
    return decode_video(uri, [0, -1], size=size)


# --------------------------------------------------------------------------- clips


def load_clips(
    row: Mapping[str, Any],
    mode: str = "eval",
    clip_len: int = 16,
    num_clips: int | None = None,
    static_k: int = 0,
    size: int | None = None,
    rng: RngLike = None,
    stride: int = 1,
    min_frames: int | None = None,
) -> dict[str, Any]:
    """Clips (and static frames) of one manifest row, all from one decoding pass.

    mode: "train" (random clips, default 1), "eval" (evenly spaced, default 5), "windows"
    (non-overlapping windows over the whole video) or "static" (static frames only).
    static_k: also return k evenly spaced frames for static clips (tile them with
    ``transforms.tile_static``). An image is one frame: its clips are that frame tiled.

    Returns ``clips`` uint8 (C, T, H, W, 3) unless mode is "static", ``static`` uint8 (K, H, W, 3) when
    requested, their frame ``clip_indices`` / ``static_indices``, ``num_frames``, ``fps``, ``padded``
    (clip positions repeating the last frame: video shorter than a clip), ``static_padded``,
    ``problem`` and ``warnings``. Raises DecodeError, also for a file wrong for its row (:func:`check_row`:
    the row's ``media`` against what the file is, and ``min_frames``).
    """
    if mode == "static" and static_k < 1:
        static_k = 10
    rng = np.random.default_rng(rng)
    planned: dict[str, Indices] = {}

    def plan(n: int) -> np.ndarray:
        parts = []
        if mode != "static":
            planned["clips"] = plan_clips(mode, n, clip_len, num_clips, stride, rng)
            parts.append(planned["clips"].indices.ravel())
        if static_k:
            planned["static"] = static_frame_indices(n, static_k)
            parts.append(planned["static"].indices)
        return np.concatenate(parts)

    trusted = row.get("num_frames") or None
    video = decode_video(str(row["uri"]), plan, size=size, num_frames=int(trusted) if trusted else None)
    check_row(str(row["uri"]), row.get("media"), video.is_image, video.num_frames, min_frames, video.problem)
    out: dict[str, Any] = {
        "num_frames": video.num_frames,
        "fps": video.fps if video.fps else float(row.get("fps") or 0.0),
        "problem": video.problem,
        "warnings": video.warnings,
        "is_image": video.is_image,
    }
    flat, offset = video.frames, 0
    if "clips" in planned:
        shape = planned["clips"].indices.shape
        count = int(np.prod(shape))
        out["clips"] = flat[:count].reshape(shape + flat.shape[1:])
        out["clip_indices"] = video.indices[:count].reshape(shape)
        # An image is a static clip by definition, not a short video: nothing was padded.
        clamped = int((video.indices[:count] != planned["clips"].indices.ravel()).sum())
        out["padded"] = 0 if video.is_image else planned["clips"].padded + clamped
        offset = count
    else:
        out["padded"] = 0
    if "static" in planned:
        out["static"] = flat[offset:]
        out["static_indices"] = video.indices[offset:]
        out["static_padded"] = 0 if video.is_image else planned["static"].padded
    return out


def try_load_clips(row: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """:func:`load_clips` that never raises for bad input: adds ``ok`` and, on failure, returns
    ``{"ok": False, "uri", "reason", "detail"}`` so a batch can count and drop it."""
    try:
        return {"ok": True, **load_clips(row, **kwargs)}
    except DecodeError as exc:
        return {"ok": False, "uri": exc.uri, "reason": exc.reason, "detail": exc.detail}


def iter_windows(
    uri: str, clip_len: int = 16, size: int | None = None, info: dict[str, Any] | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """Stream non-overlapping windows (clip_len, H, W, 3) of a long untrimmed video with bounded
    memory, as ``(window, padded)``; the last window is padded with its last frame.

    ``info`` (optional) is filled at the end with num_frames, fps, problem and warnings.
    A failure before the first window raises DecodeError; a later one ends the stream with
    ``info["problem"]`` set (the windows already yielded stay valid).
    """
    info = {} if info is None else info
    info.update(num_frames=0, fps=0.0, problem=None, warnings=[])
    window: list[np.ndarray] = []
    with open_binary(uri) as (f, fsize):
        container = _open_container(f, fsize, uri)
        try:
            stream = _video_stream(container, uri)
            transform: Callable[[np.ndarray], np.ndarray] | None = None
            first_t = last_t = None
            try:
                for frame in container.decode(stream):
                    if transform is None:
                        transform, *_ = _display_transform(frame)
                    if frame.time is not None:
                        first_t = float(frame.time) if first_t is None else first_t
                        last_t = float(frame.time)
                    window.append(transform(_to_rgb(frame, size)))
                    info["num_frames"] += 1
                    if len(window) == clip_len:
                        yield np.stack(window), 0
                        window = []
            except _MEDIA_ERRORS as exc:
                if not info["num_frames"]:
                    raise DecodeError(container_problem(f, fsize) or "corrupt", uri, str(exc)) from None
                info["problem"] = container_problem(f, fsize) or "corrupt"
                info["warnings"].append(f"{info['problem']}: {exc}")
            if not info["num_frames"]:
                raise DecodeError(container_problem(f, fsize) or "no_frames", uri, "not one frame could be decoded")
            if info["problem"] is None and (problem := container_problem(f, fsize)):
                info["problem"] = problem
                info["warnings"].append(f"{problem}: decoded {info['num_frames']} frame(s)")
            n = info["num_frames"]
            if n > 1 and first_t is not None and last_t is not None and last_t > first_t:
                info["fps"] = (n - 1) / (last_t - first_t)
        finally:
            container.close()
    if window:
        pad = clip_len - len(window)
        yield np.stack(window + [window[-1]] * pad), pad
