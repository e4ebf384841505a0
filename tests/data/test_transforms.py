import numpy as np
import pytest
import torch

from splavu_ray.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    random_resized_crop_params,
    tile_static,
    train_transform,
)


def _clip(t=4, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_eval_shape_and_normalisation():
    flat = np.full((3, 40, 60, 3), 128, np.uint8)
    out = eval_transform(flat, size=32)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(out[:, c], torch.tensor((128 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]), atol=1e-5)
    batch = eval_transform(np.stack([_clip(), _clip(seed=1)]), size=32)
    assert batch.shape == (2, 4, 3, 32, 32)
    assert torch.allclose(batch[1], eval_transform(_clip(seed=1), size=32))


def test_eval_resizes_short_side_then_centre_crops():
    # a wide frame: black left third, white right third; the centre crop keeps the middle,
    # so the output is symmetric about its vertical axis after un-normalising
    frame = np.full((1, 64, 192, 3), 128, np.uint8)
    frame[:, :, :64], frame[:, :, 128:] = 0, 255
    out = eval_transform(frame, size=56)  # short side 64 -> 64, crop 56 of the middle 64+ pixels
    assert out.shape == (1, 3, 56, 56)
    grey = (128 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(out[0, 0, :, 4:-4], torch.tensor(grey), atol=1e-4)
    assert eval_transform(_clip(h=224, w=300), size=224).shape == (4, 3, 224, 224)


def test_train_is_seeded_same_crop_for_all_frames_and_flips():
    still = np.repeat(_clip(t=1), 5, axis=0)  # identical frames: identical outputs iff the crop is shared
    out = train_transform(still, size=24, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 24, 24)
    assert all(torch.equal(out[0], out[i]) for i in range(5))
    again = train_transform(still, size=24, generator=torch.Generator().manual_seed(0))
    other = train_transform(still, size=24, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)
    plain = train_transform(still, size=24, generator=torch.Generator().manual_seed(3), hflip_p=0.0)
    flipped = train_transform(still, size=24, generator=torch.Generator().manual_seed(3), hflip_p=1.0)
    assert torch.equal(plain.flip(-1), flipped)


def test_train_batch_draws_one_crop_per_clip():
    batch = np.stack([_clip(t=1)] * 6)  # six identical one-frame clips
    out = train_transform(batch, size=16, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 3, 16, 16)
    assert len({out[i].sum().item() for i in range(6)}) > 1  # different crops/flips per clip


def test_random_resized_crop_params_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(60, 80, (0.3, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top <= 60 - h and 0 <= left <= 80 - w
        assert 0.27 <= h * w / (60 * 80) <= 1.0 and 0.7 <= w / h <= 1.4
    # impossible ratio range -> torchvision's centre-crop fallback
    assert random_resized_crop_params(10, 100, (0.99, 1.0), (1.0, 1.0), g) == (0, 45, 10, 10)


def test_tile_static_is_a_view():
    frames = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    tiled = tile_static(frames, 16)
    assert tiled.shape == (2, 16, 3, 4, 4) and tiled.data_ptr() == frames.data_ptr()
    assert torch.equal(tiled[1, 7], frames[1])
    assert tile_static(frames.unsqueeze(1), 8).shape == (2, 8, 3, 4, 4)  # (K, 1, ...) from a transform


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        eval_transform(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        eval_transform(np.zeros((8, 8, 3), np.uint8))
