"""Privacy attackers (paper MLP, linear, one-pass bank) and the linear action probe."""

import numpy as np
import pytest
import torch
from torch import nn

from splavu_ray.probes import action_probe, action_scores, attack, attack_bank, choose_c, fit_heads, grid, mlp_attacker


def planted(n, dim=16, seed=0, signal=3.0):
    """Two attributes: a0 lives in feature 0, a1 is pure label noise (no feature carries it)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.5).astype(np.float32)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 0] += signal * (2 * y[:, 0] - 1)
    return x, y


def test_heads_trained_together_match_heads_trained_alone():
    x, y = planted(96)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def heads(n):
        torch.manual_seed(1)
        return [mlp_attacker(16, 2, 8) for _ in range(n)]

    lrs, wds = [1e-3, 1e-2], [0.0, 0.1]
    together = fit_heads(heads(2), xt, yt, nn.BCEWithLogitsLoss(), 5, lrs, wds, seed=3)
    for k in range(2):
        (alone,) = fit_heads([heads(2)[k]], xt, yt, nn.BCEWithLogitsLoss(), 5, [lrs[k]], [wds[k]], seed=3)
        for p, q in zip(together[k].parameters(), alone.parameters()):
            assert torch.allclose(p, q, atol=1e-6)
    # Different hyper-parameters really give different heads.
    assert not torch.allclose(together[0][0].weight, together[1][0].weight)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_attacker_finds_the_planted_attribute_only(kind):
    (x, y), (xt, yt) = planted(256, seed=0), planted(256, seed=1)
    res = attack(x, y, xt, yt, ["a0", "noise"], kind, epochs=15, lr=1e-2, seed=0)
    assert res.per_attribute["a0"] > 95.0
    assert res.per_attribute["noise"] < 65.0  # prevalence ~50: no signal to find
    assert res.cmap == pytest.approx((res.per_attribute["a0"] + res.per_attribute["noise"]) / 2)
    assert 0.0 <= res.macro_f1 <= 100.0


def test_bank_reports_every_head_and_a_too_small_lr_learns_less():
    (x, y), (xt, yt) = planted(256, seed=0, signal=1.0), planted(256, seed=1, signal=1.0)
    lrs, wds = grid([1e-6, 1e-2], [0.0, 0.1])
    bank = attack_bank(x, y, xt, yt, ["a0", "noise"], lrs, wds, "linear", epochs=10, seed=0)
    assert sorted(bank) == ["lr0.01_wd0", "lr0.01_wd0.1", "lr1e-06_wd0", "lr1e-06_wd0.1"]
    assert bank["lr0.01_wd0"].per_attribute["a0"] > bank["lr1e-06_wd0"].per_attribute["a0"] + 5


def test_attack_rejects_mismatched_inputs():
    x, y = planted(32)
    with pytest.raises(ValueError, match="equal d"):
        attack(x, y, x[:, :8], y, ["a0", "noise"], epochs=1)
    with pytest.raises(ValueError, match="attribute names"):
        attack(x, y, x, y, ["a0"], epochs=1)
    with pytest.raises(ValueError, match="'mlp' or 'linear'"):
        attack(x, y, x, y, ["a0", "noise"], "svm", epochs=1)


def clip_videos(rng, dirs, n, noise, length=5):
    labels = rng.integers(len(dirs), size=n)
    return dirs[labels][:, None, :] + rng.normal(size=(n, length, dirs.shape[1])) * noise, labels


@pytest.mark.parametrize("kind", ["logreg", "sgd"])
def test_action_probe_averages_the_clips_of_each_video(kind):
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(3, 8)) * 2
    xtr, ytr = clip_videos(rng, dirs, 90, 1.0)
    xte, yte = clip_videos(rng, dirs, 60, 4.0)  # single clips are noisy; the mean over 5 clips is not
    top1 = action_probe(xtr, ytr, xte, yte, 3, epochs=20, kind=kind)
    single = action_probe(xtr, ytr, xte[:, :1], yte, 3, epochs=20, kind=kind)
    assert top1 > single and top1 > 60
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        action_probe(xtr, np.full(90, -1), xte, yte, 3, epochs=1, kind=kind)


def test_logreg_probe_is_deterministic_and_sgd_moves_with_the_seed():
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(4, 16))
    xtr, ytr = clip_videos(rng, dirs, 80, 2.0)
    xte, _ = clip_videos(rng, dirs, 40, 2.0)
    a, b = (action_scores(xtr, ytr, xte, 4, seed=s) for s in (0, 1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-6)
    c, d = (action_scores(xtr, ytr, xte, 4, epochs=3, seed=s, kind="sgd") for s in (0, 1))
    assert not np.allclose(c, d)


def test_choose_c_prefers_strong_regularisation_when_most_dimensions_are_noise():
    rng = np.random.default_rng(2)
    dirs = np.zeros((3, 200))
    dirs[:, :3] = np.eye(3) * 1.5  # 3 informative dimensions out of 200, few videos: C must be small
    xtr, ytr = clip_videos(rng, dirs, 45, 1.0, length=1)
    grid = [1e-3, 1e-2, 1e-1, 1.0, 100.0]
    chosen = choose_c(xtr, ytr, 3, grid)
    assert chosen in grid and chosen < 100.0
    # too few videos per class for 3 folds: the grid's middle value, no error
    assert choose_c(xtr[:4], np.array([0, 1, 2, 0]), 3, grid) == 1e-1


def test_logreg_probe_keeps_every_class_column():
    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(5, 8)) * 3
    xtr, ytr = clip_videos(rng, dirs, 60, 0.5)
    keep = ytr != 2  # class 2 never seen in training: it gets probability 0, columns stay aligned
    scores = action_scores(xtr[keep], ytr[keep], xtr, 5)
    assert scores.shape == (60, 5) and np.all(scores[:, 2] == 0)
    assert (scores[keep].argmax(1) == ytr[keep]).mean() > 0.9
    one = action_scores(xtr[ytr == 1], ytr[ytr == 1], xtr[:3], 5)  # a single class: nothing to learn
    assert np.all(one.argmax(1) == 1)
    with pytest.raises(ValueError, match="'logreg' or 'sgd'"):
        action_scores(xtr, ytr, xtr, 5, kind="svm")
