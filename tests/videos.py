"""Tiny test media, good and bad, written with PyAV (shared by the data tests and others).

Every good video encodes its frame index in its brightness: frame i is flat grey at ``level(i)``,
so ``frame_index(frames)`` recovers the decoded order even through lossy codecs (exact up to
MAX_PATTERN_FRAMES frames). Import as ``from videos import ...`` (tests/data/conftest.py puts this
folder on sys.path). Everything is small (default 32x48 px, 12 frames) so a file takes milliseconds.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

# case name -> (encoder, container extension, pixel format)
CODEC_CASES: dict[str, tuple[str, str, str]] = {
    "h264-mp4": ("libx264", "mp4", "yuv420p"),
    "mpeg4-avi": ("mpeg4", "avi", "yuv420p"),
    "mjpeg-avi": ("mjpeg", "avi", "yuvj420p"),
    "mjpeg-mov": ("mjpeg", "mov", "yuvj420p"),
    "vp8-webm": ("libvpx", "webm", "yuv420p"),
    "vp9-mkv": ("libvpx-vp9", "mkv", "yuv420p"),
    "h264-mkv": ("libx264", "mkv", "yuv420p"),
    "h264-mov": ("libx264", "mov", "yuv420p"),
}
DEFAULT_ENCODER = {"mp4": "libx264", "mov": "libx264", "mkv": "libx264", "avi": "mpeg4", "webm": "libvpx"}
_ENCODER_OPTIONS = {  # keep the slow VPx encoders fast
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}
_STEP, _BASE = 8, 16
MAX_PATTERN_FRAMES = 28  # levels 16..232 stay distinct and inside the video range


def level(i: int) -> int:
    """Brightness of pattern frame ``i``."""
    return _BASE + _STEP * (i % MAX_PATTERN_FRAMES)


def pattern_frame(i: int, height: int = 32, width: int = 48) -> np.ndarray:
    return np.full((height, width, 3), level(i), dtype=np.uint8)


def marker_frame(i: int, height: int = 32, width: int = 48) -> np.ndarray:
    """A pattern frame with a white block in its top-left quarter (to check orientation)."""
    frame = pattern_frame(i, height, width)
    frame[: height // 4, : width // 4] = 255
    return frame


def frame_index(frames: np.ndarray) -> np.ndarray:
    """Recover pattern indices from decoded frames (..., H, W, 3), using their central region."""
    h, w = frames.shape[-3:-1]
    centre = frames[..., h // 4 : h - h // 4, w // 4 : w - w // 4, :].astype(np.float64)
    return np.rint((centre.mean(axis=(-3, -2, -1)) - _BASE) / _STEP).astype(np.int64)


def write_video(
    path: str | os.PathLike,
    num_frames: int = 12,
    height: int = 32,
    width: int = 48,
    codec: str | None = None,
    fps: int = 10,
    pix_fmt: str | None = None,
    rotation: int | None = None,
    hflip: bool = False,
    timestamps_ms: Sequence[int] | None = None,
    frame_fn: Callable[[int, int, int], np.ndarray] = pattern_frame,
) -> Path:
    """Encode ``num_frames`` pattern frames; the encoder defaults from the extension.

    rotation/hflip set the display matrix (counter-clockwise degrees, as av's frame.rotation reads);
    timestamps_ms gives each frame's presentation time (variable frame rate).
    """
    path = Path(path)
    codec = codec or DEFAULT_ENCODER[path.suffix.lstrip(".")]
    pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=dict(_ENCODER_OPTIONS.get(codec, {})))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None or hflip:
            stream.set_display_rotation(rotation or 0, hflip=hflip)
        if timestamps_ms is not None:
            assert len(timestamps_ms) == num_frames
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, height, width), format="rgb24")
            if timestamps_ms is not None:
                frame.pts, frame.time_base = int(timestamps_ms[i]), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_image(path: str | os.PathLike, height: int = 32, width: int = 48, value: int = 100) -> Path:
    """A flat PNG or JPEG (by extension)."""
    path = Path(path)
    codec = {".png": "png", ".jpg": "mjpeg", ".jpeg": "mjpeg"}[path.suffix.lower()]
    pix = {"png": "rgb24", "mjpeg": "yuvj420p"}[codec]
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), value, np.uint8), format="rgb24")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio_only(path: str | os.PathLike, seconds: float = 0.5) -> Path:
    """A valid media file with no video stream (WAV)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = int(8000 * seconds)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# --------------------------------------------------------------------------- bad files


def write_empty(path: str | os.PathLike) -> Path:
    """A zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_truncated(src: str | os.PathLike, dst: str | os.PathLike, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes (a download or copy cut short)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def write_corrupt(path: str | os.PathLike, src: str | os.PathLike | None = None, keep: int = 16, seed: int = 0) -> Path:
    """The first ``keep`` header bytes of a real video (``src``, or a fresh h264 mp4) followed by
    random bytes of the same total length: the file looks like a video but cannot be parsed."""
    path = Path(path)
    if src is None:
        src = write_video(path.with_name(path.stem + ".src.mp4"))
    data = Path(src).read_bytes()
    noise = np.random.default_rng(seed).integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
    path.write_bytes(data[:keep] + noise)
    return path


def write_text(path: str | os.PathLike) -> Path:
    """A text file (typically named .mp4: the wrong file behind a video name)."""
    path = Path(path)
    path.write_text("this is not a video\n" * 20)
    return path


def write_random(path: str | os.PathLike, size: int = 4096, seed: int = 1) -> Path:
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def make_unreadable(path: str | os.PathLike) -> Path:
    """A path that exists but cannot be read as a file: a directory named like a video.

    (Tests run as root, for whom chmod 000 files stay readable.)
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_no_frames(path: str | os.PathLike) -> Path:
    """A well-formed Matroska file with a video track but no frames (a recording that captured
    nothing): a real .mkv whose clusters are replaced by one empty Cluster, its Segment of unknown size."""
    path = Path(path)
    write_video(path.with_suffix(".tmp.mkv"), num_frames=2)
    data = bytearray(path.with_suffix(".tmp.mkv").read_bytes())
    path.with_suffix(".tmp.mkv").unlink()
    segment, cluster = data.find(b"\x18\x53\x80\x67"), data.find(b"\x1f\x43\xb6\x75")
    assert segment > 0 and cluster > segment and data[segment + 4] == 0x01, "unexpected Matroska layout"
    data[segment + 4 : segment + 12] = b"\x01" + b"\xff" * 7  # 8-byte "unknown size"
    path.write_bytes(bytes(data[:cluster]) + b"\x1f\x43\xb6\x75\x80")  # one empty Cluster
    return path


def patch_avi_frame_count(path: str | os.PathLike, count: int) -> Path:
    """Make an AVI's headers (avih dwTotalFrames and strh dwLength) claim ``count`` frames."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    assert avih >= 0 and strh >= 0, "not an AVI written by FFmpeg"
    struct.pack_into("<I", data, avih + 8 + 16, count)
    struct.pack_into("<I", data, strh + 8 + 32, count)
    path.write_bytes(bytes(data))
    return path
