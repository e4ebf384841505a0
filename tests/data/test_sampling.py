import numpy as np
import pytest

from splavu_ray.data.sampling import (
    clip_span,
    eval_clip_indices,
    plan_clips,
    static_frame_indices,
    train_clip_indices,
    window_indices,
)


def test_train_clip_is_consecutive_in_range_and_seeded():
    idx, padded = train_clip_indices(100, 16, rng=3)
    assert idx.shape == (16,) and padded == 0
    assert np.all(np.diff(idx) == 1) and idx[0] >= 0 and idx[-1] <= 99
    assert np.array_equal(idx, train_clip_indices(100, 16, rng=3).indices)
    starts = {int(train_clip_indices(20, 16, rng=np.random.default_rng(s)).indices[0]) for s in range(200)}
    assert starts == set(range(5))  # every start 0..n-16 is possible, nothing past the end


def test_train_clip_with_stride():
    idx, padded = train_clip_indices(64, 8, stride=4, rng=0)
    assert np.all(np.diff(idx) == 4) and idx[-1] <= 63 and padded == 0
    assert clip_span(8, 4) == 29


def test_short_video_pads_with_last_frame():
    idx, padded = train_clip_indices(5, 16, rng=0)
    assert idx.tolist() == [0, 1, 2, 3, 4] + [4] * 11 and padded == 11
    clips, padded = eval_clip_indices(5, 16, num_clips=5)
    assert clips.shape == (5, 16) and padded == 55
    assert all(row.tolist() == idx.tolist() for row in clips)


def test_eval_clips_evenly_spaced_first_to_last():
    clips, padded = eval_clip_indices(100, 16, num_clips=5)
    assert clips.shape == (5, 16) and padded == 0
    assert clips[0, 0] == 0 and clips[-1, -1] == 99
    assert np.all(np.diff(clips[:, 0]) > 0)
    assert np.ptp(np.diff(clips[:, 0])) <= 1  # evenly spaced (up to rounding)
    assert np.all(np.diff(clips, axis=1) == 1)


def test_windows_cover_the_video_once_and_pad_the_last():
    wins, padded = window_indices(40, 16)
    assert wins.shape == (3, 16) and padded == 8
    assert np.array_equal(wins.ravel()[:40], np.arange(40))
    assert wins[-1].tolist() == list(range(32, 40)) + [39] * 8
    wins, padded = window_indices(32, 16)
    assert wins.shape == (2, 16) and padded == 0
    wins, padded = window_indices(3, 16)
    assert wins.shape == (1, 16) and padded == 13


def test_static_frames_evenly_spaced():
    idx, padded = static_frame_indices(100, 10)
    assert idx.tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95] and padded == 0
    idx, padded = static_frame_indices(3, 10)
    assert idx.shape == (10,) and set(idx.tolist()) == {0, 1, 2} and padded == 7
    assert np.all(np.diff(idx) >= 0)
    assert static_frame_indices(1, 2).indices.tolist() == [0, 0]


def test_plan_clips_modes_and_errors():
    assert plan_clips("train", 50, 16, num_clips=3, rng=0).indices.shape == (3, 16)
    assert plan_clips("train", 50, 16, rng=0).indices.shape == (1, 16)
    assert plan_clips("eval", 50, 16).indices.shape == (5, 16)
    assert plan_clips("windows", 50, 16).indices.shape == (4, 16)
    with pytest.raises(ValueError, match="mode"):
        plan_clips("random", 50)
    with pytest.raises(ValueError):
        train_clip_indices(0, 16)
    with pytest.raises(ValueError):
        eval_clip_indices(10, 16, num_clips=0)
