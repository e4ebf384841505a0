"""Chance references and the vectorised bootstrap: every weighted statistic equals its plain metric on
the explicitly resampled data, the random-AP reference matches a Monte Carlo over random rankings, and the
intervals behave (contain the estimate, narrow with more data, paired drops)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from splavu_ray.data.sequences import AnomalyVideo
from splavu_ray.metrics.anomaly import frame_auc, frame_elements
from splavu_ray.metrics.bootstrap import (
    bootstrap,
    count_chunks,
    in_row_blocks,
    paired_summary,
    percentile_interval,
    weighted_accuracy,
    weighted_auc,
    weighted_average_precision,
    weighted_cmap,
    weighted_group_gap,
)
from splavu_ray.metrics.classification import (
    accuracy_gap,
    cmap,
    per_group_accuracy,
    random_average_precision,
    random_cmap,
)
from splavu_ray.metrics.detection import detection_matches, mean_average_precision, weighted_map


def resampled_index(counts_row: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts_row)), counts_row.astype(int))


@pytest.mark.parametrize("n,pos", [(10, 3), (25, 1), (40, 20)])
def test_random_ap_matches_a_monte_carlo_over_random_rankings(n, pos):
    rng = np.random.default_rng(0)
    y = np.zeros(n, int)
    y[rng.choice(n, pos, replace=False)] = 1
    exact = random_average_precision(y)
    draws = [average_precision_score(y, rng.permutation(n)) for _ in range(600)]  # sklearn, as the attackers
    mc, se = 100 * np.mean(draws), 100 * np.std(draws) / np.sqrt(len(draws))
    assert exact == pytest.approx(mc, abs=4 * se + 1e-9)
    # many more random rankings by hand: AP = mean over positives of the precision at their rank
    ranked = y[np.argsort(rng.random((20000, n)), axis=1)]
    hits = np.cumsum(ranked, axis=1)
    ap = ((hits / np.arange(1, n + 1)) * ranked).sum(axis=1) / pos
    assert exact == pytest.approx(100 * ap.mean(), abs=4 * 100 * ap.std() / np.sqrt(len(ap)) + 1e-9)
    assert random_average_precision(y) >= 100 * pos / n - 1e-9  # above a constant score's AP (the prevalence)


def test_random_cmap_is_the_mean_over_scorable_attributes():
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 0, 1]])  # the third attribute has no negative
    assert random_cmap(y) == pytest.approx((random_average_precision(y[:, 0]) + random_average_precision(y[:, 1])) / 2)
    assert random_average_precision(np.array([0, 1])) == pytest.approx(75.0)  # AP 1 or 1/2, equally likely


def test_counts_are_seeded_resamples_of_size_n_independent_of_chunking():
    a = np.concatenate(list(count_chunks(7, 50, seed=3)))
    b = np.concatenate(list(count_chunks(7, 50, seed=3, max_cells=7 * 50)))
    assert a.shape == (50, 7) and (a.sum(axis=1) == 7).all() and (a == b).all()
    assert not (a == np.concatenate(list(count_chunks(7, 50, seed=4)))).all()


def test_weighted_statistics_equal_the_metrics_on_the_resampled_data():
    rng = np.random.default_rng(1)
    n = 30
    y = (rng.random((n, 3)) < 0.4).astype(int)
    s = np.round(rng.random((n, 3)), 1)  # rounded: ties, which AP groups
    counts = np.concatenate([np.ones((1, n)), next(count_chunks(n, 20, seed=0))])
    ap = weighted_average_precision(s[:, 0], y[:, 0], counts)
    cm = weighted_cmap(s, y, counts)
    labels = rng.integers(0, 3, n)
    scores = np.eye(3)[rng.integers(0, 3, n)]
    hits = scores.argmax(1) == labels
    groups = np.array(["f", "m"])[rng.integers(0, 2, n)]
    acc, gap = weighted_accuracy(hits, counts), weighted_group_gap(hits, groups, counts)
    auc = weighted_auc(s[:, 1], y[:, 1], np.arange(n), np.ones(n), counts)
    for b, row in enumerate(counts):
        i = resampled_index(row)
        if 0 < y[i, 0].sum() < len(i):
            assert ap[b] == pytest.approx(average_precision_score(y[i, 0], s[i, 0]))
            assert auc[b] == pytest.approx(100 * roc_auc_score(y[i, 1], s[i, 1])) or not 0 < y[i, 1].sum() < len(i)
        assert cm[b] == pytest.approx(cmap(s[i], y[i]))
        assert acc[b] == pytest.approx(100 * hits[i].mean())
        if len(set(groups[i])) == 2:
            assert gap[b] == pytest.approx(accuracy_gap(per_group_accuracy(scores[i], labels[i], groups[i].tolist())))


def test_weighted_auc_over_frame_groups_is_the_frame_level_auc():
    rng = np.random.default_rng(2)
    videos = [AnomalyVideo(np.zeros((4, 2)), i % 2, 15, 4.0, 4, np.array([[1.0, 2.5]]) if i % 2 else np.zeros((0, 2)))
              for i in range(6)]
    windows = [rng.random(4) for _ in videos]
    elements = frame_elements(videos, windows)
    assert weighted_auc(*elements, np.ones((1, 6)))[0] == pytest.approx(frame_auc(videos, windows))
    counts = np.array([[2.0, 1, 0, 1, 0, 2]])  # videos 0, 0, 1, 3, 5, 5
    picked = [0, 0, 1, 3, 5, 5]
    assert weighted_auc(*elements, counts)[0] == pytest.approx(frame_auc([videos[i] for i in picked],
                                                                         [windows[i] for i in picked]))
    many = next(count_chunks(6, 9, seed=0))  # blocks of rows (the memory bound) change nothing
    assert in_row_blocks(lambda c: weighted_auc(*elements, c), many, 10, max_cells=20) == pytest.approx(
        weighted_auc(*elements, many))


def test_weighted_map_is_the_map_of_the_resampled_videos():
    rng = np.random.default_rng(3)
    gt_seg, gt_lab, dets = [], [], []
    for _ in range(6):
        start = rng.uniform(0, 8, 2)
        gt_seg.append(np.stack([start, start + 2], 1))
        gt_lab.append(rng.integers(0, 2, 2))
        k = 5
        ds = rng.uniform(0, 8, k)
        dets.append({"segments": np.stack([ds, ds + rng.uniform(1, 3, k)], 1), "scores": rng.random(k),
                     "labels": rng.integers(0, 2, k)})
    matches = detection_matches(gt_seg, gt_lab, dets)
    full = mean_average_precision(gt_seg, gt_lab, dets, 2)["map"]
    assert weighted_map(matches, np.ones((1, 6)))[0] == pytest.approx(full)
    counts = next(count_chunks(6, 5, seed=1))
    got = weighted_map(matches, counts)
    for b, row in enumerate(counts):
        i = resampled_index(row)
        want = mean_average_precision([gt_seg[j] for j in i], [gt_lab[j] for j in i], [dets[j] for j in i], 2)["map"]
        assert got[b] == pytest.approx(want)


def test_interval_contains_the_estimate_and_narrows_with_more_videos():
    rng = np.random.default_rng(4)
    widths = []
    for n in (40, 1000):
        hits = rng.random(n) < 0.6
        point = 100 * hits.mean()
        values = bootstrap(n, {"acc": lambda c, h=hits: weighted_accuracy(h, c)}, 1000, seed=0)["acc"]
        lo, hi = percentile_interval(values, 0.95)
        assert lo <= point <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # ~ 1 / sqrt(n): 5x narrower for 25x the videos


def test_paired_drop_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(5)
    n = 60
    good, bad = rng.random(n) < 0.9, rng.random(n) < 0.3
    stats = {"good": lambda c: weighted_accuracy(good, c), "bad": lambda c: weighted_accuracy(bad, c)}
    v = bootstrap(n, stats, 500, seed=0)
    sep = paired_summary([v["good"]], [v["bad"]], 100 * good.mean(), 100 * bad.mean(), 0.95)
    assert sep["drop_excludes_zero"] and sep["drop_interval"][0] > 0 and sep["drop"] == pytest.approx(
        100 * (good.mean() - bad.mean()))
    same = paired_summary([v["good"]], [v["good"]], 100 * good.mean(), 100 * good.mean(), 0.95)
    assert not same["drop_excludes_zero"] and same["drop_interval"] == [0.0, 0.0] and same["drop"] == 0.0
    # pooled over two seeds: the raw interval holds both seeds' resamples
    two = paired_summary([v["good"], v["bad"]], [v["bad"], v["bad"]], 0.0, 0.0, 0.95)
    assert two["raw"][0] <= np.quantile(v["bad"], 0.5) <= np.quantile(v["good"], 0.5) <= two["raw"][1]
