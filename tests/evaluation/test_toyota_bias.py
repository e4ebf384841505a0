"""The natural bias protocol on Toyota Smarthome: cross-subject splits as published, per-group accuracy gap."""

import numpy as np
import pytest

from splavu_ray.config import load_config
from splavu_ray.data.feature_store import FeatureSplit
from splavu_ray.data.manifest import write_manifest
from splavu_ray.evaluation.bias_protocols import BiasProtocolError, natural_cross_subject
from splavu_ray.evaluation.suite import report_table
from splavu_ray.evaluation.task import EvalInputError
from splavu_ray.evaluation.toyota_bias import ToyotaBiasTask, mean_class_accuracy, toyota_bias_section
from splavu_ray.models.adapter import AnonymizingAdapter

ACTIONS = ("Walk", "Sitdown", "Readbook")
# train p03 (f), p04 (m), p06 (m); test p02 (f), p10 (m): a naturally imbalanced cross-subject split
SUBJECTS = {"p03": ("train", "female"), "p04": ("train", "male"), "p06": ("train", "male"),
            "p02": ("test", "female"), "p10": ("test", "male")}


def rows(n_per_action=4):
    out = []
    for s, (split, gender) in SUBJECTS.items():
        for a, action in enumerate(ACTIONS):
            for k in range(n_per_action):
                out.append({"uri": f"/toyota/{action}_{s}_r00_v{k:02d}_c01.mp4", "dataset": "toyota_smarthome",
                            "split": split, "media": "video", "action": action, "action_id": a, "subject_id": s,
                            "gender": gender})
    return out


def test_natural_cross_subject_keeps_every_video_and_counts_subjects():
    r = rows()
    train, test = [x for x in r if x["split"] == "train"], [x for x in r if x["split"] == "test"]
    sel = natural_cross_subject(train, test)
    assert len(sel["train"]) == len(train) and len(sel["test"]) == len(test)
    assert sel["subjects"] == {"train": {"female": 1, "male": 2}, "test": {"female": 1, "male": 1}}
    with pytest.raises(BiasProtocolError, match=r"subject\(s\) \['p03'\] appear in both"):
        natural_cross_subject(train, test + [train[0]])


def test_mean_class_accuracy_weights_classes_not_videos():
    scores = np.eye(2)[[0, 0, 0, 0]]  # always class 0; labels 3x class 0, 1x class 1
    assert mean_class_accuracy(scores, np.array([0, 0, 0, 1])) == 50.0


def test_section_and_table(tmp_path):
    rng = np.random.default_rng(0)
    dim = 16
    centres = rng.normal(size=(len(ACTIONS), dim))
    splits = {}
    for split in ("train", "test"):
        r = [x for x in rows() if x["split"] == split]
        clips = [centres[x["action_id"]] + rng.normal(size=(2, dim)) for x in r]
        splits[split] = FeatureSplit(r, clips, [c[:1] for c in clips], ACTIONS, (), dim)
    cfg = load_config(None, ["eval.action.probe_c=1.0"])
    sec = toyota_bias_section(cfg, AnonymizingAdapter(dim, "mlp", layers=1), splits["train"], splits["test"], "t")
    assert sec["train_videos"] == 36 and sec["test_videos"] == 24
    assert sec["train_group_share"] == pytest.approx({"female": 1 / 3, "male": 2 / 3})
    for tag in ("raw", "anonymized"):
        per = sec[tag]["per_group"]
        assert sec[f"gap_{tag}"] == pytest.approx(abs(per["female"] - per["male"]))
        assert 0 <= sec[tag]["mean_class_accuracy"] <= 100 and set(sec[tag]["mean_class_accuracy_per_group"]) == set(per)
    assert sec["overall_raw"] > 80  # the toy actions are easy
    assert "bias gap Toyota Smarthome (lower=better)" in report_table({"toyota_bias": sec}).splitlines()[0]


def test_check_names_what_is_missing(tmp_path):
    task, cfg = ToyotaBiasTask(), load_config(None, [])
    with pytest.raises(EvalInputError, match="set eval.toyota_bias.manifest"):
        task.check(cfg, "unused.parquet")
    no_gender = tmp_path / "no_gender.parquet"
    write_manifest(str(no_gender), [{**x, "gender": None} for x in rows(1)], ACTIONS)
    with pytest.raises(EvalInputError, match="lack a usable 'gender'"):
        task.check(load_config(None, [f"eval.toyota_bias.manifest={no_gender}"]), str(no_gender))
    leaky = tmp_path / "leaky.parquet"
    write_manifest(str(leaky), [{**x, "split": "test"} if x["subject_id"] == "p03" and x["action"] == "Walk" else x
                                for x in rows(1)], ACTIONS)
    with pytest.raises(EvalInputError, match="cross-subject"):
        task.check(load_config(None, [f"eval.toyota_bias.manifest={leaky}"]), str(leaky))
