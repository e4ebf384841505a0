"""Weakly supervised anomaly detection: frame labels/scores, AUC, the MGFN-style loss terms, a head
that learns from video labels only, and evaluate_anomaly through a feature store."""

import numpy as np
import pytest
import torch
from test_tad import write_untrimmed_store  # this folder is on sys.path (default import mode)

from splavu_ray.config import AnomalyTaskConfig, load_config
from splavu_ray.data.sequences import AnomalyError, AnomalyVideo, balanced_batch
from splavu_ray.evaluation.anomaly import anomaly_auc, evaluate_anomaly
from splavu_ray.metrics.anomaly import frame_auc, frame_labels, frame_scores
from splavu_ray.models.adapter import AnonymizingAdapter
from splavu_ray.models.heads import AnomalyHead
from splavu_ray.objectives.anomaly import anomaly_loss


def test_frame_labels_and_scores_by_hand():
    # 16 fps; anomaly [0.25, 0.5) s covers frames 4..7.
    assert frame_labels(np.array([[0.25, 0.5]]), 12, 16.0).tolist() == [0] * 4 + [1] * 4 + [0] * 4
    # windows of 4 frames; the last window is padded, so 10 frames keep 2 of its 4
    assert frame_scores(np.array([0.1, 0.9, 0.3]), 10, 4).tolist() == [0.1] * 4 + [0.9] * 4 + [0.3] * 2
    with pytest.raises(AnomalyError, match="only 2 windows"):
        frame_scores(np.array([0.1, 0.2]), 9, 4)


def test_frame_auc_perfect_inverted_and_half():
    v = AnomalyVideo(np.zeros((3, 2)), 1, 12, 4.0, 4, np.array([[1.0, 2.0]]))  # frames 4..7 abnormal
    assert frame_auc([v], [np.array([0.0, 1.0, 0.0])]) == pytest.approx(100.0)
    assert frame_auc([v], [np.array([1.0, 0.0, 1.0])]) == pytest.approx(0.0)
    # constant scores: every pair tied -> 50
    assert frame_auc([v], [np.array([0.5, 0.5, 0.5])]) == pytest.approx(50.0)
    normal = AnomalyVideo(np.zeros((3, 2)), 0, 12, 4.0, 4, np.zeros((0, 2)))
    with pytest.raises(AnomalyError, match="both anomalous and normal"):
        frame_auc([normal], [np.zeros(3)])


def test_loss_terms_by_hand():
    cfg = AnomalyTaskConfig(topk=1, margin=1.0)
    # one abnormal and one normal video, 3 windows; logits 0 -> scores 0.5 everywhere
    logits = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    feats = torch.tensor([[[0.0, 0], [3, 4], [0, 0]], [[0, 0], [0, 0], [0, 0]]])
    mags = feats.norm(dim=-1)
    out = anomaly_loss(logits, mags, feats, mask, torch.tensor([1, 0]), cfg)
    assert out["cls"].item() == pytest.approx(np.log(2))  # BCE at video score 0.5
    assert out["smooth"].item() == pytest.approx(0.0)
    assert out["sparse"].item() == pytest.approx(1.5)  # sum of the abnormal video's scores
    # top-1 magnitude features (3, 4) vs (0, 0): distance 5 > margin -> no push; no same-label pair
    assert out["mc"].item() == pytest.approx(0.0)
    close = anomaly_loss(logits, mags, feats * 0.1, mask, torch.tensor([1, 0]), cfg)
    assert close["mc"].item() == pytest.approx((1 - 0.5) ** 2)  # distance 0.5 -> (margin - 0.5)^2


def test_balanced_batches_need_both_kinds():
    rng = np.random.default_rng(0)
    idx = balanced_batch(np.array([0, 0, 1, 1, 0, 1]), 4, rng)
    assert sorted(np.array([0, 0, 1, 1, 0, 1])[idx].tolist()) == [0, 0, 1, 1]
    with pytest.raises(AnomalyError, match="0 abnormal"):
        balanced_batch(np.array([0, 0]), 4, rng)


def toy_videos(n, rng, dim=16, length=12):
    out = []
    for i in range(n):
        f = rng.normal(size=(length, dim)).astype(np.float32) * 0.5
        segs = np.zeros((0, 2))
        if i % 2:
            a = int(rng.integers(0, length - 2))
            f[a:a + 2, 3] += 2.0
            segs = np.array([[a * 1.0, a + 2.0]])
        out.append(AnomalyVideo(f, i % 2, length * 16, 16.0, 16, segs))
    return out


def test_head_learns_from_video_labels_only():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    auc = anomaly_auc(toy_videos(24, rng), toy_videos(16, rng), AnomalyTaskConfig(epochs=20, hidden=32))
    assert auc > 80  # chance 50


def test_head_masks_padding():
    torch.manual_seed(0)
    head = AnomalyHead(8, 16).eval()
    x = torch.randn(1, 5, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8)], 1)
    a = head(x)[0]
    b = head(padded, torch.tensor([[True] * 5 + [False] * 3]))[0]
    assert torch.allclose(a[0], b[0, :5], atol=1e-5)


def test_evaluate_anomaly_through_the_feature_store(tmp_path):
    torch.set_num_threads(1)
    store = write_untrimmed_store(tmp_path / "store", np.random.default_rng(3))
    cfg = load_config(None, ["eval.anomaly.epochs=15", "eval.anomaly.hidden=32"])
    adapter = AnonymizingAdapter(16, layers=1, heads=4)  # identity at init
    res = evaluate_anomaly(cfg, adapter, store)
    assert res["auc_raw"] > 70, res
    assert res["auc_anonymized"] == pytest.approx(res["auc_raw"], abs=1e-6)
    assert res["sizes"] == {"train": 24, "test": 12, "abnormal_train": 12}
