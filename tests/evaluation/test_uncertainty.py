"""Intervals and chance references in results.json, the table and report.html (eval.bootstrap)."""

import numpy as np
import pytest
from toy import make_toy_store

from splavu_ray.config import ConfigError, load_config
from splavu_ray.data.sequences import DetectionVideo
from splavu_ray.evaluation.run_report import results_rows, write_run_report
from splavu_ray.evaluation.suite import evaluate_features, report_table, table_columns
from splavu_ray.evaluation.tad import random_detections, random_detector_map
from splavu_ray.metrics.detection import mean_average_precision
from splavu_ray.models.adapter import AnonymizingAdapter

FAST = ["eval.privacy.attacker_epochs=8", "eval.privacy.attacker_lr=0.01", "eval.privacy.attackers=[mlp, linear]"]


def with_intervals() -> dict:
    def unc(raw, anon, drop, excl):
        return {"raw": raw, "anonymized": anon, "drop": drop, "drop_interval": excl, "unit": "test video", "n": 40,
                "drop_excludes_zero": excl[0] > 0 or excl[1] < 0, "seeds": [0]}

    return {
        "bootstrap": {"resamples": 1000, "confidence": 0.95, "seed": 0, "training_seeds": [0, 1]},
        "privacy": {"cmap_worst_raw": 80.0, "cmap_worst_anonymized": 60.0, "cmap_worst_chance": 50.0,
                    "chance_reference": {"cmap_worst": {"constant": 50.0, "random_scores": 53.2}},
                    "intervals": {"cmap_worst": unc([75.04, 84.96], [55.0, 65.0], 20.0, [14.0, 26.0])}},
        "action": {"top1_raw": 61.6, "top1_anonymized": 61.0, "top1_chance": 10.0,
                   "chance_reference": {"top1": {"uniform": 10.0, "majority": 12.5}},
                   "intervals": {"top1": unc([58.9, 64.2], [58.0, 63.9], 0.6, [-1.2, 2.5])}},
    }


def test_table_shows_intervals_drop_verdict_and_chance():
    table = report_table(with_intervals())
    lines = table.splitlines()
    assert lines[2] == "| raw | 80.00 [75.0, 85.0] | 61.60 [58.9, 64.2] |"
    assert lines[3] == "| anonymized | 60.00 [55.0, 65.0] | 61.00 [58.0, 63.9] |"
    assert "| drop (raw - anonymized) | +20.00 [+14.0, +26.0] | +0.60 [-1.2, +2.5] |" in lines
    assert "| drop beyond noise | yes | no |" in lines
    assert "| chance | 50.00 constant / 53.20 random scores | 10.00 uniform / 12.50 majority |" in lines
    assert "95% percentile bootstrap" in lines[-1] and "1000 resamples" in lines[-1] and "seeds 0, 1" in lines[-1]
    # report.html: the same rows (the note under the table is not a row), and the note as text
    _, rows = results_rows(with_intervals(), table_columns())
    assert rows[0] == ["raw", "80.00 [75.0, 85.0]", "61.60 [58.9, 64.2]"] and rows[-1][0] == "chance"


def test_report_page_shows_intervals_and_their_meaning(tmp_path):
    doc = write_run_report(with_intervals(), [], tmp_path, table_columns()).read_text()
    assert "80.00 [75.0, 85.0]" in doc and "drop beyond noise" in doc and "53.20 random scores" in doc
    assert "percentile bootstrap over the test videos" in doc


@pytest.mark.parametrize("bad,message", [
    ("eval.bootstrap.resamples=20", "no resample in the tails"),
    ("eval.bootstrap.confidence=1.0", "confidence"),
    ("eval.bootstrap.seeds=0", "seeds"),
    ("eval.bootstrap.resample=100", "unknown config key 'eval.bootstrap.resample'"),
])
def test_bad_bootstrap_settings_are_rejected(bad, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [bad])


def test_random_detector_keeps_the_detection_count_and_scores_near_zero():
    rng = np.random.default_rng(0)
    videos = [DetectionVideo(np.zeros((20, 2)), 1.0, np.array([[s, s + 3.0]]), np.array([s % 3]))
              for s in range(0, 15, 2)]
    dets = random_detections(videos, [4] * len(videos), 3, rng)
    assert [len(d["scores"]) for d in dets] == [4] * len(videos)
    assert all((d["segments"][:, 0] <= d["segments"][:, 1]).all() and d["segments"].max() <= 20 for d in dets)
    chance = random_detector_map(videos, [4] * len(videos), 3, draws=5, seed=0)
    assert chance == random_detector_map(videos, [4] * len(videos), 3, draws=5, seed=0)  # seeded
    perfect = [{"segments": v.segments, "scores": np.ones(1), "labels": v.labels} for v in videos]
    assert mean_average_precision([v.segments for v in videos], [v.labels for v in videos], perfect, 3)["map"] == 100.0
    assert 0 <= chance < 25


def test_attacker_seeds_are_pooled(tmp_path):
    store = make_toy_store(tmp_path / "s", n_train=48, n_test=30, dim=16)
    cfg = load_config(None, [*FAST, "eval.bootstrap.seeds=2", "eval.bootstrap.resamples=200"])
    train, test = store.load("train"), store.load("test")
    res = evaluate_features(cfg, AnonymizingAdapter(16, "mlp", layers=1), store.load("privacy_train"),
                            store.load("privacy_test"), train, test)
    p = res["privacy"]
    unc = p["intervals"]["cmap"]
    assert unc["seeds"] == [0, 1] and len(unc["per_seed"]["raw"]) == 2 and unc["n"] == 30
    assert p["cmap_raw"] == pytest.approx(np.mean(unc["per_seed"]["raw"]))  # the headline: the seeds' mean
    assert unc["raw"][0] <= p["cmap_raw"] <= unc["raw"][1]
    assert p["chance_reference"]["cmap"]["random_scores"] > p["chance_reference"]["cmap"]["constant"]
    # the logreg action probe is deterministic: one seed, whatever eval.bootstrap.seeds says
    assert res["action"]["intervals"]["top1"]["seeds"] == [0] and "per_seed" not in res["action"]["intervals"]["top1"]
    assert res["bootstrap"]["resamples"] == 200 and res["bootstrap"]["training_seeds"] == [0, 1]
