import pickle

import numpy as np
import pytest
import videos as V
from pyarrow import fs as pafs

from splavu_ray.data import decode
from splavu_ray.data.decode import (
    DecodeError,
    decode_video,
    default_min_frames,
    iter_windows,
    load_clips,
    probe_video,
    try_load_clips,
)

N = 20  # frames of the matrix videos


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    files = {
        name: V.write_video(root / f"{name}.{ext}", num_frames=N, codec=codec, pix_fmt=pix)
        for name, (codec, ext, pix) in V.CODEC_CASES.items()
    }
    files["root"] = root
    return files


@pytest.mark.parametrize("case", list(V.CODEC_CASES))
def test_codec_container_matrix(media, case):
    video = decode_video(str(media[case]))
    assert video.frames.shape == (N, 32, 48, 3) and video.frames.dtype == np.uint8
    assert V.frame_index(video.frames).tolist() == list(range(N))
    assert video.num_frames == N and video.num_frames_source == "decoded"
    assert video.fps == pytest.approx(10.0) and video.problem is None and video.warnings == []

    some = decode_video(str(media[case]), [[3, 4], [18, 19]], size=16)  # resized on the fly
    assert some.frames.shape == (2, 2, 16, 24, 3)
    assert V.frame_index(some.frames).tolist() == [[3, 4], [18, 19]]


def test_plan_is_called_once_and_decoding_stops_early(media):
    calls = []

    def plan(n):
        calls.append(n)
        return np.arange(2, 6)

    video = decode_video(str(media["h264-mp4"]), plan)
    assert calls == [N] and V.frame_index(video.frames).tolist() == [2, 3, 4, 5]
    # it stopped after frame 5; the rest was counted from packets, not trusted from the header
    assert video.num_frames == N and video.num_frames_source == "packets"


def test_indices_past_the_end_are_clamped_and_counted(media):
    video = decode_video(str(media["mpeg4-avi"]), [N - 2, N - 1, N + 3, -1])
    assert V.frame_index(video.frames).tolist() == [N - 2, N - 1, N - 1, N - 1]
    assert video.indices.tolist() == [N - 2, N - 1, N - 1, N - 1] and video.padded == 1


@pytest.mark.parametrize("claimed", [50, 5])
def test_header_frame_count_that_lies(tmp_path, claimed):
    path = V.patch_avi_frame_count(V.write_video(tmp_path / "lie.avi", num_frames=N, codec="mpeg4"), claimed)
    out = load_clips({"uri": str(path)}, mode="eval", clip_len=4, num_clips=3)
    # clips are planned on the real count: the last clip ends on the real last frame
    assert out["num_frames"] == N and out["clip_indices"][-1, -1] == N - 1
    assert V.frame_index(out["clips"][-1]).tolist() == [16, 17, 18, 19]
    assert any(f"claims {claimed}" in w for w in out["warnings"]) and out["padded"] == 0


def test_stream_without_any_count_hint(tmp_path):
    path = V.write_video(tmp_path / "raw.h264", num_frames=N, codec="libx264")  # no container, no duration
    video = decode_video(str(path), lambda n: np.arange(n - 2, n))
    assert V.frame_index(video.frames).tolist() == [N - 2, N - 1] and video.num_frames == N


def test_variable_frame_rate(tmp_path):
    stamps = [0, 100, 150, 400, 450, 500, 900, 950, 1000, 1200]
    video = decode_video(str(V.write_video(tmp_path / "vfr.mkv", num_frames=10, timestamps_ms=stamps)))
    assert V.frame_index(video.frames).tolist() == list(range(10))  # by frame, not by time
    assert video.fps == pytest.approx(9 / 1.2)  # mean rate from timestamps


@pytest.mark.parametrize(
    "ext,rotation,hflip,expected",
    [
        ("mp4", 90, False, lambda a: np.rot90(a, 1)),
        ("mov", -90, False, lambda a: np.rot90(a, -1)),
        ("mp4", 180, False, lambda a: np.rot90(a, 2)),
        ("mov", 0, True, lambda a: a[:, ::-1]),
    ],
)
def test_rotation_metadata_is_applied(tmp_path, ext, rotation, hflip, expected):
    path = V.write_video(tmp_path / f"r.{ext}", num_frames=3, rotation=rotation, hflip=hflip, frame_fn=V.marker_frame)
    video = decode_video(str(path))
    want = expected(V.marker_frame(0, 32, 48))
    assert video.frames.shape[1:3] == want.shape[:2]
    assert np.abs(video.frames[0].astype(int) - want).mean() < 8  # the marker is where it should be
    assert video.rotation == (rotation if rotation != -180 else 180) and video.mirrored == hflip
    resized = decode_video(str(path), [0], size=16)
    assert resized.frames.shape[1:3] == ((24, 16) if abs(rotation) == 90 else (16, 24))


def test_video_shorter_than_a_clip_is_padded_and_flagged(tmp_path):
    path = V.write_video(tmp_path / "short.mp4", num_frames=5)
    out = load_clips({"uri": str(path)}, mode="train", clip_len=16, rng=0)
    assert out["clips"].shape == (1, 16, 32, 48, 3) and out["padded"] == 11
    assert V.frame_index(out["clips"][0]).tolist() == [0, 1, 2, 3, 4] + [4] * 11


def test_load_clips_modes_share_one_pass(tmp_path):
    path = str(V.write_video(tmp_path / "v.webm", num_frames=24))
    ev = load_clips({"uri": path}, mode="eval", clip_len=8, num_clips=3, static_k=4, size=16)
    assert ev["clips"].shape == (3, 8, 16, 24, 3) and ev["static"].shape == (4, 16, 24, 3)
    assert V.frame_index(ev["clips"][:, 0]).tolist() == [0, 8, 16]
    assert V.frame_index(ev["static"]).tolist() == [3, 9, 15, 21]
    tr = load_clips({"uri": path, "num_frames": 24}, mode="train", clip_len=8, rng=1)
    assert np.all(np.diff(V.frame_index(tr["clips"][0])) == 1)
    st = load_clips({"uri": path}, mode="static", static_k=2)
    assert "clips" not in st and st["static"].shape == (2, 32, 48, 3)
    win = load_clips({"uri": path}, mode="windows", clip_len=10)
    assert win["clips"].shape == (3, 10, 32, 48, 3) and win["padded"] == 6


def test_iter_windows_streams_the_same_windows(tmp_path):
    path = str(V.write_video(tmp_path / "u.mkv", num_frames=23))
    info: dict = {}
    windows = list(iter_windows(path, clip_len=8, size=16, info=info))
    assert [p for _, p in windows] == [0, 0, 1]
    assert V.frame_index(np.stack([w for w, _ in windows]))[-1].tolist() == [16, 17, 18, 19, 20, 21, 22, 22]
    assert info["num_frames"] == 23 and info["problem"] is None and info["fps"] == pytest.approx(10.0)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_images_are_one_frame_static_clips(tmp_path, ext):
    path = str(V.write_image(tmp_path / f"i.{ext}", value=100))
    video = decode_video(path)
    assert video.frames.shape == (1, 32, 48, 3) and video.is_image and video.num_frames == 1
    assert abs(float(video.frames.mean()) - 100) < 3
    out = load_clips({"uri": path, "media": "image"}, mode="eval", clip_len=4, num_clips=1, static_k=1)
    assert out["clips"].shape == (1, 4, 32, 48, 3) and out["padded"] == 0 and out["is_image"]


def _reason(path) -> str:
    with pytest.raises(DecodeError) as info:
        decode_video(str(path))
    return info.value.reason


def test_bad_files_give_their_reason(media, tmp_path, monkeypatch):
    assert _reason(tmp_path / "missing.mp4") == "missing"
    assert _reason(V.write_empty(tmp_path / "empty.mp4")) == "empty"
    assert _reason(V.write_text(tmp_path / "text.mp4")) == "not_video"
    assert _reason(V.write_random(tmp_path / "random.avi")) == "not_video"
    assert _reason(V.write_audio_only(tmp_path / "audio.wav")) == "not_video"
    assert _reason(V.make_unreadable(tmp_path / "dir.mp4")) == "unreadable"
    assert _reason(V.write_no_frames(tmp_path / "none.mkv")) == "no_frames"
    for case in V.CODEC_CASES:
        src = media[case]
        assert _reason(V.write_corrupt(tmp_path / f"c-{case}{src.suffix}", src=src)) == "corrupt", case
    assert _reason(V.write_truncated(media["h264-mp4"], tmp_path / "t.mp4", 0.5)) == "truncated"
    assert _reason(V.write_truncated(media["h264-mkv"], tmp_path / "t.mkv", 0.3)) == "truncated"

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(decode, "open", denied, raising=False)  # root can read chmod 000 files
    assert _reason(media["h264-mp4"]) == "unreadable"


@pytest.mark.parametrize("case", ["vp8-webm", "mjpeg-avi"])
def test_truncated_file_decodes_what_it_can_and_is_flagged(media, tmp_path, case):
    src = media[case]
    video = decode_video(str(V.write_truncated(src, tmp_path / f"t{src.suffix}", 0.6)))
    assert 0 < video.num_frames < N and video.problem == "truncated"
    assert V.frame_index(video.frames).tolist() == list(range(video.num_frames))
    assert any(w.startswith("truncated") for w in video.warnings)


def test_probe_and_safe_loading(media, tmp_path):
    probe = probe_video(str(media["vp9-mkv"]))
    assert probe.num_frames == N and V.frame_index(probe.frames).tolist() == [0, N - 1]
    bad = try_load_clips({"uri": str(tmp_path / "nope.mp4")}, mode="eval")
    assert bad == {"ok": False, "uri": str(tmp_path / "nope.mp4"), "reason": "missing", "detail": "no such file"}
    assert try_load_clips({"uri": str(media["h264-mp4"])}, mode="eval", clip_len=4)["ok"]
    err = pickle.loads(pickle.dumps(DecodeError("corrupt", "x.mp4", "why")))
    assert (err.reason, err.uri, err.detail) == ("corrupt", "x.mp4", "why")
    with pytest.raises(ValueError):
        DecodeError("weird", "x")


def test_files_wrong_for_their_row_are_rejected_with_a_reason_that_says_so(media, tmp_path):
    image = V.write_image(tmp_path / "still.png", height=40, width=56, value=90)
    video = str(media["h264-mp4"])

    def reason(row, **kw):
        res = try_load_clips(row, mode="eval", clip_len=8, num_clips=2, **kw)
        return (res["reason"], res["detail"]) if not res["ok"] else ("ok", res["padded"])

    why, detail = reason({"uri": str(image), "media": "video"})
    assert why == "wrong_media" and "media=video but the file is a still image" in detail
    why, detail = reason({"uri": video, "media": "image"})
    assert why == "wrong_media" and f"media=image but the file is a video of {N} frames" in detail
    assert reason({"uri": str(image), "media": "image"})[0] == "ok"  # an image row holding an image
    short = str(V.write_video(tmp_path / "three.mp4", num_frames=3))
    why, detail = reason({"uri": short, "media": "video"}, min_frames=4)
    assert why == "too_short" and "3 frame(s), fewer than data.min_frames=4" in detail
    five = str(V.write_video(tmp_path / "five.mp4", num_frames=5))
    assert reason({"uri": five, "media": "video"}, min_frames=4) == ("ok", 6)  # kept, 2 clips x 3 padded frames
    assert default_min_frames(16) == 8 and default_min_frames(1) == 1
    # every reject says why
    assert try_load_clips({"uri": str(V.write_empty(tmp_path / "e.mp4"))})["detail"] == "the file has 0 bytes"


def test_remote_uri_goes_through_pyarrow_fs(media, monkeypatch):
    monkeypatch.setattr(decode, "remote_filesystem", lambda uri: (pafs.LocalFileSystem(), uri[len("s3://") - 1 :]))
    video = decode_video("s3://" + str(media["h264-mov"]).lstrip("/"), [0, 1])
    assert V.frame_index(video.frames).tolist() == [0, 1]
    assert _reason("s3://" + str(media["root"] / "nope.mp4").lstrip("/")) == "missing"
