"""Bias protocols built from an NTU RGB+D 60 manifest, as a user builds it (builder -> manifest)."""

from collections import Counter

import numpy as np
import pytest

from splavu_ray.data.builders import build
from splavu_ray.data.manifest import read_manifest
from splavu_ray.evaluation.bias_protocols import (
    FEMALE,
    MALE,
    BiasProtocolError,
    check_labels,
    gender_group,
    majority_share,
    natural,
    ntu_bias,
)

# Official cross-subject split: 1, 2, 4, 5, 8, 9, 13, 14 train; 3, 6, 7, 10, 11, 12 test.
GENDERS = {1: "M", 2: "M", 4: "M", 5: "M", 8: "M", 9: "F", 13: "F", 14: "F",
           3: "M", 6: "M", 7: "M", 10: "M", 11: "F", 12: "F"}


@pytest.fixture(scope="module")
def ntu(tmp_path_factory):
    root = tmp_path_factory.mktemp("ntu")
    (root / "nturgb+d_rgb").mkdir()
    for p in GENDERS:
        for a in range(1, 5):  # drink water, eat meal/snack, brushing teeth, brushing hair
            for c in range(1, 4):
                for r in range(1, 3):
                    (root / f"nturgb+d_rgb/S001C{c:03d}P{p:03d}R{r:03d}A{a:03d}_rgb.avi").write_bytes(b"")
    (root / "subject_gender.csv").write_text("subject,gender\n" + "".join(f"P{p:03d},{g}\n" for p, g in GENDERS.items()))
    build("ntu60", str(root), str(root / "ntu.parquet"))
    man = read_manifest(str(root / "ntu.parquet"))
    return man, man.split("train").rows(), man.split("test").rows()


def subjects_by_group(rows, idx):
    groups = {}
    for i in idx:
        groups.setdefault(gender_group(rows[i]["gender"]), set()).add(rows[i]["subject_id"])
    return {g: len(s) for g, s in groups.items()}


@pytest.mark.parametrize("variant, usual, flipped", [("F", MALE, FEMALE), ("M", FEMALE, MALE)])
def test_ntu_bias_follows_the_protocol(ntu, variant, usual, flipped):
    man, train, test = ntu
    sel = ntu_bias(train, test, list(man.actions), variant, seed=0)
    assert sel["flipped_action"] == "brushing hair"
    # 1. subjects balanced in both splits (5 male / 3 female train subjects -> 3 / 3).
    assert subjects_by_group(train, sel["train"]) == {MALE: 3, FEMALE: 3}
    assert subjects_by_group(test, sel["test"]) == {MALE: 2, FEMALE: 2}
    # 2. test: as many male as female videos of every action.
    test_counts = Counter((test[i]["action"], gender_group(test[i]["gender"])) for i in sel["test"])
    assert set(test_counts.values()) == {12}  # 2 subjects x 3 cameras x 2 repetitions
    # 3. train: 18 majority videos + 1 minority one per action, majority flipped for brushing hair.
    shares = majority_share(train, sel["train"])
    assert shares == pytest.approx({a: 18 / 19 for a in range(4)})
    counts = Counter((train[i]["action"], gender_group(train[i]["gender"])) for i in sel["train"])
    for action in man.actions[:4]:
        major = flipped if action == "brushing hair" else usual
        minor = MALE if major == FEMALE else FEMALE
        assert (counts[(action, major)], counts[(action, minor)]) == (18, 1), action
    again = ntu_bias(train, test, list(man.actions), variant, seed=0)
    assert np.array_equal(again["train"], sel["train"]) and np.array_equal(again["test"], sel["test"])


def test_natural_protocol_keeps_the_splits(ntu):
    _, train, test = ntu
    sel = natural(train, test)
    assert len(sel["train"]) == len(train) and len(sel["test"]) == len(test)


def test_missing_or_one_sided_gender_labels_are_named(ntu, tmp_path):
    man, train, test = ntu
    no_gender = [{**r, "gender": None} for r in train]
    with pytest.raises(BiasProtocolError, match="lack a usable 'gender'"):
        ntu_bias(no_gender, test, list(man.actions), "F")
    with pytest.raises(BiasProtocolError, match="only \\['male'\\]"):
        check_labels([r for r in train if gender_group(r["gender"]) == MALE], "train")
    with pytest.raises(BiasProtocolError, match="not in the action vocabulary"):
        ntu_bias(train, test, list(man.actions), "F", flipped_action="yodel")
    with pytest.raises(BiasProtocolError, match="'F' or 'M'"):
        ntu_bias(train, test, list(man.actions), "X")
