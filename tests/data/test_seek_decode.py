"""Keyframe seeking in decode_video is frame-accurate: every frame of a seeked clip equals the frame at the
same index of a decode from the first frame, on several codecs, B-frames, a non-zero start, variable
frame rate, and a container whose header lies about its length."""

from fractions import Fraction

import av
import numpy as np
import pytest
import videos as V

from splavu_ray.data import decode
from splavu_ray.data.decode import SEEK_MIN_FRAME, decode_video, load_clips

N, H, W, GOP = 120, 48, 64, 12

# case -> (encoder, extension, encoder options, variable timestamps starting past 0)
CASES = {
    "h264-mp4-bframes": ("libx264", "mp4", {"g": str(GOP), "bf": "3"}, False),
    "h264-mkv-vfr-offset": ("libx264", "mkv", {"g": str(GOP)}, True),
    "hevc-mp4": ("libx265", "mp4", {"g": str(GOP), "x265-params": "log-level=error"}, False),
    "mpeg4-avi-bframes": ("mpeg4", "avi", {"g": str(GOP), "bf": "2"}, False),
    "mjpeg-avi": ("mjpeg", "avi", {}, False),
    "vp9-webm": ("libvpx-vp9", "webm", {"g": str(GOP), "deadline": "realtime", "cpu-used": "8"}, False),
}
_STEPS_MS = [40, 100, 60, 250]  # irregular frame durations


def moving_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A fixed texture scrolling one pixel a frame, with the frame number in binary along the top: every
    frame differs, and consecutive frames are alike (so encoders predict, use B-frames and long GOPs)."""
    rng = np.random.default_rng(7)
    texture = rng.integers(30, 200, (h // 4, (w + N) // 4 + 1, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    frame = np.ascontiguousarray(texture[:h, i : i + w])
    for bit in range(8):
        frame[:6, bit * 8 : bit * 8 + 6] = 240 if (i >> bit) & 1 else 10
    return frame


def write(path, codec: str, options: dict, vfr: bool, n: int = N, rotation: int | None = None):
    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = W, H, pix
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if vfr:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        t = 700  # the first frame is shown at 0.74 s
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(moving_frame(i), format="rgb24")
            if vfr:
                t += _STEPS_MS[i % len(_STEPS_MS)]
                frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("seek")
    return {name: write(root / f"{name}.{ext}", codec, opts, vfr)
            for name, (codec, ext, opts, vfr) in CASES.items() if codec in av.codecs_available}


def _assert_seeked_clips_match(path, full, n):
    seeks = 0
    for start in range(0, n - 15, 5):
        idx = np.arange(start, start + 16)
        video = decode_video(str(path), idx)
        assert np.array_equal(video.frames, full.frames[idx]), f"clip at {start}"
        assert video.indices.tolist() == idx.tolist() and video.padded == 0
        # a clip near the start is one pass that trusts the header for the count (as before); a seek counts packets
        assert video.seeks == 0 or (idx[-1] >= SEEK_MIN_FRAME and video.num_frames == n)
        seeks += video.seeks
    return seeks


@pytest.mark.parametrize("case", list(CASES))
def test_seeked_clips_equal_a_full_decode(files, case):
    if case not in files:
        pytest.skip(f"this FFmpeg has no {CASES[case][0]} encoder")
    path = files[case]
    full = decode_video(str(path))  # every frame, one pass from the first
    assert full.num_frames == N and full.seeks == 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        keyframes = sum(p.is_keyframe for p in c.demux(stream) if p.size)
        start = stream.start_time
    assert keyframes > 3  # several GOPs: the seek has somewhere to go
    if CASES[case][3]:
        assert start and start > 0 and full.fps != pytest.approx(10.0)  # non-zero start, variable rate
    assert _assert_seeked_clips_match(path, full, N) > 0  # the seek path ran (no silent fallback)

    # several runs in one plan: evenly spaced eval clips and static frames, each reached by its own seek
    out = load_clips({"uri": str(path)}, mode="eval", clip_len=8, num_clips=4, static_k=3)
    assert np.array_equal(out["clips"], full.frames[out["clip_indices"]])
    assert np.array_equal(out["static"], full.frames[out["static_indices"]])
    assert out["clip_indices"][-1, -1] == N - 1 and out["num_frames"] == N and out["padded"] == 0
    # a plan with the caller's count (train clips from a validated manifest) and indices past the end
    video = decode_video(str(path), lambda n: np.arange(n - 4, n + 2), num_frames=N)
    assert video.num_frames_source == "trusted" and video.padded == 2
    assert np.array_equal(video.frames, full.frames[[N - 4, N - 3, N - 2, N - 1, N - 1, N - 1]])


@pytest.mark.parametrize("claimed", [50, 400])
def test_seeking_in_a_file_whose_header_lies(tmp_path, claimed):
    path = write(tmp_path / "lie.avi", "mpeg4", {"g": str(GOP), "bf": "2"}, False)
    V.patch_avi_frame_count(path, claimed)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == claimed
    full = decode_video(str(path))
    assert full.num_frames == N
    assert _assert_seeked_clips_match(path, full, N) > 0
    # a plan made on the header's count is re-planned on the true one, once
    calls = []
    video = decode_video(str(path), lambda n: calls.append(n) or np.arange(n - 16, n))
    assert calls == [claimed, N] and video.num_frames == N and video.seeks > 0
    assert np.array_equal(video.frames, full.frames[N - 16:])
    assert any(f"claims {claimed}" in w for w in video.warnings)
    out = load_clips({"uri": str(path)}, mode="eval", clip_len=16, num_clips=3)
    assert out["clip_indices"][-1, -1] == N - 1 and np.array_equal(out["clips"], full.frames[out["clip_indices"]])
    # a manifest count that is wrong too: the packets win, with a warning
    wrong = load_clips({"uri": str(path), "num_frames": claimed}, mode="eval", clip_len=16, num_clips=2)
    assert wrong["num_frames"] == N and np.array_equal(wrong["clips"], full.frames[wrong["clip_indices"]])
    assert any(f"the caller said {claimed}" in w for w in wrong["warnings"])


def test_rotation_applies_to_seeked_frames(tmp_path):
    path = write(tmp_path / "rot.mp4", "libx264", {"g": str(GOP)}, False, n=80, rotation=90)
    full = decode_video(str(path))
    video = decode_video(str(path), np.arange(60, 76))
    assert video.seeks > 0 and video.rotation == 90 and video.frames.shape[1:3] == (W, H)
    assert np.array_equal(video.frames, full.frames[60:76])


def test_fallbacks_give_the_same_frames(files, monkeypatch):
    path = str(files["h264-mp4-bframes"])
    want = np.arange(90, 106)
    seeked = decode_video(path, want)
    one_pass = decode_video(path, want, seek=False)
    assert seeked.seeks > 0 and one_pass.seeks == 0 and np.array_equal(seeked.frames, one_pass.frames)
    monkeypatch.setattr(decode, "_packet_index", lambda container, stream: None)  # an index it cannot trust
    fallback = decode_video(path, lambda n: np.arange(n - 30, n - 14))
    assert fallback.seeks == 0 and np.array_equal(fallback.frames, seeked.frames)
    assert fallback.num_frames == N and fallback.num_frames_source == "packets"
