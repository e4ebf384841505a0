"""Temporal action detection: mAP on hand-made cases, targets, losses, NMS, a detector that learns,
and evaluate_tad through a feature store (the path the evaluation suite takes)."""

import numpy as np
import pytest
import torch

from splavu_ray.config import ConfigError, TADTaskConfig, load_config
from splavu_ray.data.feature_store import FeatureStore, feature_row
from splavu_ray.data.sequences import DetectionVideo, TADError, detection_videos
from splavu_ray.evaluation.tad import (
    batched_nms_1d,
    batched_soft_nms_1d,
    decode,
    detect,
    detection_map,
    evaluate_tad,
    soft_nms_1d,
)
from splavu_ray.metrics.detection import average_precision, mean_average_precision
from splavu_ray.models.adapter import AnonymizingAdapter
from splavu_ray.models.heads import TADHead, TADOutput
from splavu_ray.objectives.detection import diou_loss_1d, sigmoid_focal_loss, tad_loss, tad_targets
from splavu_ray.run_folder import RunFolder


def dets(segments, scores, labels):
    return {"segments": np.array(segments, float), "scores": np.array(scores, float), "labels": np.array(labels)}


# ---------------------------------------------------------------- mAP on hand-made cases


def test_map_perfect_detections_is_100():
    gt = [np.array([[0, 10.0], [20, 30]]), np.array([[5, 8.0]])]
    lab = [np.array([0, 1]), np.array([1])]
    res = mean_average_precision(gt, lab, [dets(g, [0.9] * len(g), lb) for g, lb in zip(gt, lab)], 2)
    assert res["map"] == pytest.approx(100.0)
    assert set(res["per_tiou"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}


def test_map_shifted_detection():
    # GT [0, 10], prediction [2, 12]: tIoU = 8 / 12 = 0.667 -> a hit at 0.3..0.6, a miss at 0.7: 4/5.
    res = mean_average_precision([np.array([[0, 10.0]])], [np.array([0])], [dets([[2, 12]], [0.9], [0])], 1)
    assert res["per_tiou"] == pytest.approx({"0.3": 100, "0.4": 100, "0.5": 100, "0.6": 100, "0.7": 0})
    assert res["map"] == pytest.approx(80.0)


def test_map_duplicate_detection_is_a_false_positive():
    # Two GTs; ranked: exact A (TP), duplicate of A (FP), exact B (TP).
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> interpolated AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    gt, lab = [np.array([[0, 10.0], [20, 30]])], [np.array([0, 0])]
    res = mean_average_precision(gt, lab, [dets([[0, 10], [0, 10], [20, 30]], [0.9, 0.8, 0.7], [0, 0, 0])], 1)
    assert res["map"] == pytest.approx(100 * 5 / 6)


def test_map_wrong_class_detection():
    # Class 0 has GT [0, 10], class 1 has GT [20, 30]. A class-1 detection on [0, 10] ranks first:
    # class 1 AP = precision 1/2 at recall 1 = 0.5; class 0 AP = 1 -> mAP 75.
    gt, lab = [np.array([[0, 10.0], [20, 30]])], [np.array([0, 1])]
    res = mean_average_precision(gt, lab, [dets([[0, 10], [20, 30], [0, 10]], [0.9, 0.8, 0.7], [1, 1, 0])], 2)
    assert res["map"] == pytest.approx(75.0)


def test_map_matching_is_per_video_and_missed_gt_lowers_recall():
    # Video 0: GT [0, 10]; video 1: GT [0, 10] and [50, 60] (missed). A detection in video 1 cannot
    # match video 0's GT. Ranked: v0 hit, v1 hit -> recall 2/3 at precision 1 -> AP 2/3.
    gt = [np.array([[0, 10.0]]), np.array([[0, 10.0], [50, 60]])]
    lab = [np.array([0]), np.array([0, 0])]
    res = mean_average_precision(gt, lab, [dets([[0, 10]], [0.9], [0]), dets([[0, 10]], [0.8], [0])], 1)
    assert res["map"] == pytest.approx(100 * 2 / 3)
    # a class with ground truth but no detection scores 0
    assert average_precision([np.array([[0, 1.0]])], [(np.zeros((0, 2)), np.zeros(0))], 0.5) == 0.0


def test_map_bad_input_is_named():
    with pytest.raises(TADError, match="2 videos"):
        mean_average_precision([np.zeros((1, 2))] * 2, [np.array([0])] * 2, [dets([], [], [])], 1)
    with pytest.raises(TADError, match="no ground-truth"):
        mean_average_precision([np.zeros((0, 2))], [np.zeros(0, int)], [dets([], [], [])], 1)


# ---------------------------------------------------------------- targets, losses, NMS


def test_centre_sampling_and_regression_ranges():
    # Segment [2, 5) windows, class 3. Level 0 (stride 1) points at 0.5, 1.5, ...; centre 3.5, radius 1.5
    # -> points 2.5, 3.5, 4.5 are positive with (left, right) distances (0.5, 2.5), (1.5, 1.5), (2.5, 0.5).
    cls, reg, pos = tad_targets(torch.tensor([[[2.0, 5.0]]]), torch.tensor([[3]]), [12, 6, 3], [1, 2, 4], 5)
    assert pos[0][0].nonzero().flatten().tolist() == [2, 3, 4]
    assert reg[0][0][pos[0][0]].tolist() == [[0.5, 2.5], [1.5, 1.5], [2.5, 0.5]]
    assert cls[0][0, 3].argmax().item() == 3 and cls[0][0, 0].sum() == 0
    # the segment's far boundary is < 4 windows away: the coarser levels (ranges [4, 8), [8, inf)) skip it
    assert not pos[1].any() and not pos[2].any()
    # a long segment goes to a coarse level instead
    _, _, pos = tad_targets(torch.tensor([[[0.0, 20.0]]]), torch.tensor([[0]]), [24, 12, 6], [1, 2, 4], 1)
    assert not pos[0].any() and pos[2].any()


def test_diou_and_focal_loss_hand_values():
    # pred (1, 1) vs target (1, 3) from the same point: inter 2, union 4 -> IoU 0.5; enclosure 4,
    # centre offset 1 -> DIoU penalty (1/4)^2.
    assert diou_loss_1d(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 3.0]])).item() == pytest.approx(0.5625)
    assert diou_loss_1d(torch.tensor([[2.0, 3.0]]), torch.tensor([[2.0, 3.0]])).item() == pytest.approx(0.0)
    # focal at p = sigmoid(0) = 0.5, target 1: alpha * (1 - p)^2 * -log p
    assert sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(0.25 * 0.25 * np.log(2))


def test_tad_loss_keeps_every_parameter_in_the_graph_without_positives():
    head = TADHead(8, 3, hidden=16, levels=2)
    out = head(torch.randn(2, 10, 8))
    loss = tad_loss(out, torch.zeros(2, 1, 2), torch.full((2, 1), -1))
    assert loss["positives"] == 0
    loss["loss"].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_nms_is_per_class():
    segs = torch.tensor([[0, 10.0], [1, 10], [20, 30], [0, 10]])
    keep = batched_nms_1d(segs, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 0, 1]), 0.5)
    assert keep.tolist() == [0, 2, 3]  # [1, 10] overlaps [0, 10] of its class; class 1 keeps its own


def test_soft_nms_decays_overlaps_by_hand():
    # A [0, 10] 0.9; B = A's duplicate 0.8 (tIoU 1); C [20, 30] 0.7 (disjoint); D [0, 8] 0.6 (tIoU 0.8 with A).
    segs = torch.tensor([[0, 10.0], [0, 10], [20, 30], [0, 8]])
    keep, score = soft_nms_1d(segs, torch.tensor([0.9, 0.8, 0.7, 0.6]), sigma=0.5, min_score=1e-3)
    # A is picked first and decays B to 0.8 e^(-1/0.5) = 0.1083 and D to 0.6 e^(-0.64/0.5) = 0.1668; C keeps 0.7.
    # Then C (disjoint: no decay), then D: tIoU(D, B) = 0.8 decays B again to 0.1083 e^(-1.28) = 0.0301.
    b = 0.8 * np.exp(-2.0)
    d = 0.6 * np.exp(-0.64 / 0.5)
    assert keep.tolist() == [0, 2, 3, 1]
    assert score.tolist() == pytest.approx([0.9, 0.7, d, b * np.exp(-0.64 / 0.5)], rel=1e-5)
    # min_score drops what decays below it; hard NMS at 0.5 would keep only A and C
    keep, score = soft_nms_1d(segs, torch.tensor([0.9, 0.8, 0.7, 0.6]), sigma=0.5, min_score=0.15)
    assert keep.tolist() == [0, 2, 3] and score[-1].item() == pytest.approx(d, rel=1e-5)
    assert batched_nms_1d(segs, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.zeros(4), 0.5).tolist() == [0, 2]
    # linear variant: score *= 1 - iou above the threshold (B: 1 - 1 = 0 -> dropped; D: 0.6 * 0.2)
    keep, score = soft_nms_1d(segs, torch.tensor([0.9, 0.8, 0.7, 0.6]), min_score=1e-3, method="linear",
                              iou_threshold=0.5)
    assert keep.tolist() == [0, 2, 3] and score.tolist() == pytest.approx([0.9, 0.7, 0.12], rel=1e-5)
    with pytest.raises(ValueError, match="gaussian"):
        soft_nms_1d(segs, torch.ones(4), method="box")


def test_soft_nms_is_per_class():
    # The same segment in another class keeps its score; within class 0 the duplicate decays.
    segs = torch.tensor([[0, 10.0], [0, 10], [0, 10]])
    keep, score = batched_soft_nms_1d(segs, torch.tensor([0.9, 0.8, 0.6]), torch.tensor([0, 1, 0]))
    assert keep.tolist() == [0, 1, 2]
    assert score.tolist() == pytest.approx([0.9, 0.8, 0.6 * np.exp(-2.0)], rel=1e-5)
    keep, score = batched_soft_nms_1d(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert keep.numel() == 0 and score.numel() == 0


def hand_output():
    """One level (stride 1), 10 points, 1 class: points 2 and 3 predict the same segment [0.5, 4.5]
    (0.9, 0.8), point 7 predicts [6.5, 8.5] (0.7); the rest score ~0."""
    prob = torch.full((10,), 1e-9)
    prob[2], prob[3], prob[7] = 0.9, 0.8, 0.7
    reg = torch.zeros(10, 2)
    reg[2], reg[3], reg[7] = torch.tensor([2.0, 2.0]), torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    return TADOutput([torch.logit(prob)[None, :, None]], [reg[None]], [torch.ones(1, 10, dtype=torch.bool)], [1])


def test_decode_soft_vs_hard_min_score_and_max_detections():
    dup = 0.8 * np.exp(-2.0)
    [soft] = decode(hand_output(), [2.0])  # soft is the default; segments in seconds (window 2 s)
    assert soft["segments"] == pytest.approx(np.array([[1, 9], [13, 17], [1, 9.0]]))
    assert soft["scores"] == pytest.approx([0.9, 0.7, dup], rel=1e-5)  # the decayed score is returned
    [hard] = decode(hand_output(), [2.0], nms="hard", iou_threshold=0.5)
    assert hard["segments"] == pytest.approx(np.array([[1, 9], [13, 17.0]]))
    assert hard["scores"] == pytest.approx([0.9, 0.7], rel=1e-5)
    [res] = decode(hand_output(), [2.0], min_score=0.2)
    assert res["scores"] == pytest.approx([0.9, 0.7], rel=1e-5)
    [res] = decode(hand_output(), [2.0], max_detections=2)
    assert res["scores"] == pytest.approx([0.9, 0.7], rel=1e-5) and res["labels"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="'soft' or 'hard'"):
        decode(hand_output(), [2.0], nms="greedy")


def test_nms_method_comes_from_the_config():
    video = DetectionVideo(np.zeros((10, 4), np.float32), 2.0, np.array([[1.0, 9.0]]), np.array([0]))
    def head(x):  # detect only calls the head
        return hand_output()

    soft_cfg = load_config(None, []).eval.tad
    assert (soft_cfg.nms, soft_cfg.nms_sigma, soft_cfg.nms_min_score) == ("soft", 0.5, 0.001)
    assert len(detect(head, [video], [video.feats], soft_cfg)[0]["scores"]) == 3
    hard_cfg = load_config(None, ["eval.tad.nms=hard"]).eval.tad
    assert detect(head, [video], [video.feats], hard_cfg)[0]["scores"] == pytest.approx([0.9, 0.7], rel=1e-5)
    sharp = load_config(None, ["eval.tad.nms_sigma=0.1", "eval.tad.nms_min_score=0.01"]).eval.tad
    assert detect(head, [video], [video.feats], sharp)[0]["scores"] == pytest.approx([0.9, 0.7], rel=1e-5)


@pytest.mark.parametrize("override, message", [
    ("eval.tad.nms=greedy", "eval.tad.nms.*'soft' or 'hard'"),
    ("eval.tad.nms_sigma=0", "eval.tad.nms_sigma.*greater than 0"),
    ("eval.tad.nms_min_score=-0.1", "eval.tad.nms_min_score.*greater than or equal to 0"),
])
def test_bad_nms_config_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_head_masks_padding_and_decodes_in_seconds():
    torch.manual_seed(0)
    head = TADHead(8, 2, hidden=16, levels=3).eval()
    x = torch.randn(1, 7, 8)
    padded = torch.cat([x, torch.randn(1, 5, 8)], 1)
    mask = torch.tensor([[True] * 7 + [False] * 5])
    a, b = head(x), head(padded, mask)
    assert torch.allclose(a.cls[0][0], b.cls[0][0, :7], atol=1e-5)
    [res] = decode(a, [0.5])
    assert res["segments"].min() >= 0 and res["segments"].max() <= 7 * 0.5 + 1e-6


# ---------------------------------------------------------------- training and the evaluation path


def toy_videos(n, rng, dim=16, length=24, window_s=0.5):
    """A bump in feature c marks an action of class c over a random span of windows."""
    out = []
    for _ in range(n):
        f = rng.normal(size=(length, dim)).astype(np.float32) * 0.3
        a, c = int(rng.integers(0, length - 6)), int(rng.integers(3))
        b = a + int(rng.integers(2, 6))
        f[a:b, c] += 2.0
        out.append(DetectionVideo(f, window_s, np.array([[a * window_s, b * window_s]]), np.array([c])))
    return out


FAST = TADTaskConfig(epochs=15, hidden=32, levels=2, lr=3e-3)


def test_detector_learns_toy_actions():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    res = detection_map(toy_videos(24, rng), toy_videos(16, rng), 3, FAST)
    assert res["map"] > 50, res  # chance is near 0
    assert res["per_tiou"]["0.3"] >= res["per_tiou"]["0.7"]


def untrimmed_rows(rng, n=(24, 12), dim=16, length=12, fps=16.0, clip_len=16):
    """Store rows of tad_* and anomaly_* videos shaped like the built-in data's: an action of class c is
    a bump in feature c over 3 windows; an anomaly a bump in feature 5 over 2 windows."""
    rows = []
    for split, count in (("tad_train", n[0]), ("tad_test", n[1]), ("anomaly_train", n[0]), ("anomaly_test", n[1])):
        for i in range(count):
            f = rng.normal(size=(length, dim)).astype(np.float32) * 0.3
            w = clip_len / fps
            a = int(rng.integers(0, length - 3))
            segs, anoms, abnormal = [], [], split.startswith("anomaly") and i % 2 == 1
            if split.startswith("tad"):
                c = int(rng.integers(3))
                f[a:a + 3, c] += 2.0
                segs = [{"start": a * w, "end": (a + 3) * w, "label": f"a{c}"}]
            elif abnormal:
                f[a:a + 2, 5] += 2.0
                anoms = [{"start": a * w, "end": (a + 2) * w}]
            man = {"uri": f"/toy/{split}/{i}.mp4", "dataset": "toy", "split": split, "media": "video",
                   "action_id": -1, "segments": segs, "anomaly": abnormal, "anomaly_segments": anoms,
                   "num_frames": length * clip_len, "fps": fps}
            rows.append(feature_row(man, f, np.zeros((0, dim))))
    return rows


def write_untrimmed_store(root, rng, n=(24, 12), dim=16):
    store = FeatureStore(str(root))
    rows = untrimmed_rows(rng, n, dim)
    store.write_shard(0, rows)
    store.write_meta({"num_shards": 1, "num_rows": len(rows), "dim": dim, "actions": ["a0", "a1", "a2"],
                      "attributes": [], "clip_len": 16, "backbone": {"name": "toy", "embed_dim": dim}})
    return FeatureStore.open(str(root))


def test_evaluate_tad_through_the_feature_store(tmp_path):
    torch.set_num_threads(1)
    store = write_untrimmed_store(tmp_path / "store", np.random.default_rng(1))
    cfg = load_config(None, ["eval.tad.epochs=12", "eval.tad.hidden=32", "eval.tad.levels=2", "eval.tad.lr=3e-3"])
    adapter = AnonymizingAdapter(16, layers=1, heads=4)  # starts as the identity
    res = evaluate_tad(cfg, adapter, store)
    assert res["map_raw"] > 40, res
    assert res["map_anonymized"] == pytest.approx(res["map_raw"], abs=1e-6)  # identity f_A changes nothing
    assert res["sizes"] == {"train": 24, "test": 12, "classes_in_test": 3}
    # a split the store lacks is named
    bad = load_config(None, ["eval.tad.test_split=nope"])
    with pytest.raises(TADError, match="'nope'"):
        evaluate_tad(bad, adapter, store)


def test_detection_videos_reject_unknown_labels_and_missing_fps(tmp_path):
    store = write_untrimmed_store(tmp_path / "store", np.random.default_rng(2), n=(2, 1))
    split = store.load("tad_train")
    with pytest.raises(TADError, match="not in the class vocabulary"):
        detection_videos(split, 16, ["other"])
    split.rows[0]["fps"] = None
    with pytest.raises(TADError, match="no fps"):
        detection_videos(split, 16, ["a0", "a1", "a2"])


# ---------------------------------------------------------------- co-training (w_tad, w_ad)


def cotrain_store(root):
    """The conftest toy store (trimmed train/val/test, width 32, actions a0..a3) plus untrimmed rows."""
    from toy import make_toy_store

    store = make_toy_store(root)
    rows = untrimmed_rows(np.random.default_rng(5), n=(16, 8), dim=32)
    store.write_shard(1, rows)
    store.write_meta({**store.meta, "num_shards": 2, "num_rows": store.meta["num_rows"] + len(rows), "clip_len": 16})
    return FeatureStore.open(str(root))


def cotrain_config(tmp_path, name, extra=()):
    return load_config(None, [
        f"run_name={name}", f"output_dir={tmp_path / name}", "adapter.layers=1", "adapter.heads=4",
        "optim.batch_size=16", "optim.base_batch_size=16", "optim.lr=3e-3", "optim.epochs=2", "optim.head_epochs=1",
        "optim.warmup_epochs=0", "loss.w_lc=10", "loss.w_tad=1", "loss.w_ad=1", "eval.tad.hidden=16",
        "eval.tad.levels=2", "eval.anomaly.hidden=16", "scaling.num_workers=2", *extra])


def test_cached_source_rides_untrimmed_batches_along_every_step(tmp_path):
    from splavu_ray.training.batches import CachedSource

    store = cotrain_store(tmp_path / "store")
    cfg = cotrain_config(tmp_path, "src")
    ranks = [CachedSource(store, ["train"], ["val"], cfg, r, 2) for r in (0, 1)]
    batches = [list(src.batches(epoch=0)) for src in ranks]
    assert len(batches[0]) == len(batches[1]) == 64 // 16  # every rank runs the same number of steps
    b = batches[0][0]
    assert b.tad.feats.shape == (4, 12, 32) and b.tad.segments.shape[-1] == 2 and b.tad.labels.min() >= 0
    assert sorted(b.ad.labels.tolist()) == [0, 0, 1, 1]  # balanced normal / abnormal
    # a pure function of (seed, epoch, step, rank): a resumed run draws the same videos
    again = next(CachedSource(store, ["train"], ["val"], cfg, 0, 2).batches(epoch=0))
    assert torch.equal(again.tad.feats, b.tad.feats) and torch.equal(again.ad.labels, b.ad.labels)
    assert not torch.equal(batches[1][0].tad.feats, b.tad.feats)
    # a task that is on but has no data is named
    bad = cotrain_config(tmp_path, "bad", ["eval.tad.train_split=nope"])
    with pytest.raises(ValueError, match="eval.tad.train_split"):
        CachedSource(store, ["train"], ["val"], bad, 0, 2)


def test_cotraining_step_trains_heads_and_adapter_through_task_losses(tmp_path):
    from splavu_ray.objectives.splavu import LossWeights
    from splavu_ray.training.batches import CachedSource
    from splavu_ray.training.model import SplavuModel
    from splavu_ray.training.steps import Objective, head_step_loss, splavu_step_loss

    torch.manual_seed(0)
    cfg = cotrain_config(tmp_path, "step")
    src = CachedSource(cotrain_store(tmp_path / "store").root, ["train"], ["val"], cfg)
    model = SplavuModel(AnonymizingAdapter(32, layers=1, heads=4), src.num_actions, src.tad_classes, True,
                        cfg.eval.tad, cfg.eval.anomaly)
    batch = next(src.batches(0))
    # heads phase: TAD/AD heads learn on raw features, f_A gets no gradient
    out = head_step_loss(model, batch, Objective.from_config(cfg))
    out["loss"].backward()
    assert {"l_ar", "l_tad", "l_ad"} <= set(out)
    assert all(p.grad is None or not p.grad.any() for p in model.adapter.parameters())
    assert all(p.grad is not None for p in model.tad_head.parameters())
    model.zero_grad()
    # joint phase with only TAD on: f_A's gradient comes from L_TAD (no L_LC, L_B, AR)
    only_tad = Objective(LossWeights(0.0, 1.0, 0.0), w_ar=0.0, w_tad=1.0, w_ad=0.0, temperature=0.1, tad=cfg.eval.tad,
                         ad=cfg.eval.anomaly)
    out = splavu_step_loss(model, batch, only_tad, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(out["l_tad"].item(), rel=1e-5)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter.parameters())


@pytest.mark.slow
def test_cotraining_fit_on_ray_with_zero2(ray_session, tmp_path):
    from splavu_ray.distributed.torch_trainer import export_from_result, fit

    store = cotrain_store(tmp_path / "store")
    cfg = cotrain_config(tmp_path, "cotrain", ["deepspeed.zero_stage=2", "loss.w_ar=0"])
    result = fit(cfg, store.root, ["train"], ["val"])
    assert result.error is None
    hist = export_from_result(result, RunFolder(tmp_path / "export"))["state"]["history"]
    assert [h["phase"] for h in hist] == ["heads", "joint", "joint"]
    assert all({"train_l_tad", "train_l_ad"} <= set(h) for h in hist)
    assert hist[-1]["train_l_tad"] < hist[0]["train_l_tad"]
    # w_ar = 0: validation accuracy of an untrained head does not pick the adapter; the latest does
    assert export_from_result(result, RunFolder(tmp_path / "export"))["state"]["best_epoch"] == 3
