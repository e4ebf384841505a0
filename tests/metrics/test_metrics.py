import numpy as np
import pytest

from splavu_ray.metrics.classification import (
    chance_cmap,
    cmap,
    leakage_drop,
    macro_f1,
    per_attribute_ap,
    relative_change,
    top1,
)


def test_cmap_perfect_and_chance():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert cmap(y.astype(float), y) == pytest.approx(100.0)
    assert chance_cmap(y) == pytest.approx(50.0)  # prevalence of each attribute is 0.5


def test_cmap_skips_degenerate_attributes():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.5]])
    assert cmap(s, y) == pytest.approx(100.0)
    assert list(per_attribute_ap(s, y, ["a", "b"])) == ["a"]


def test_macro_f1_and_top1():
    y = np.array([[1, 0], [0, 1]])
    assert macro_f1(np.array([[0.9, 0.1], [0.1, 0.9]]), y) == pytest.approx(100.0)
    assert top1(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == pytest.approx(50.0)


def test_relative_changes():
    assert relative_change(63.64, 41.07) == pytest.approx(-35.47, abs=0.01)
    assert leakage_drop(60.0, 50.0, 40.0) == pytest.approx(50.0)


def test_per_group_accuracy_and_gap():
    from splavu_ray.metrics.classification import accuracy_gap, per_group_accuracy

    scores = np.eye(3)[[0, 1, 2, 0, 1, 1]]  # predictions 0 1 2 0 1 1
    labels = np.array([0, 1, 1, 0, 2, 1])
    groups = ["female", "female", "female", "male", "male", "male"]
    per = per_group_accuracy(scores, labels, groups)
    assert per == pytest.approx({"female": 200 / 3, "male": 200 / 3})
    per = per_group_accuracy(scores, np.array([0, 1, 2, 1, 1, 1]), groups)
    assert per == pytest.approx({"female": 100.0, "male": 200 / 3})
    assert accuracy_gap(per) == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="two groups"):
        accuracy_gap({"female": 50.0})


def test_retrieval_top1_uses_cosine_nearest_gallery_item():
    from splavu_ray.metrics.classification import retrieval_chance, retrieval_top1

    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ids = ["a", "b", "c"]
    # Cosine ignores the norm: (5, 0.1) is closest in angle to "a" although far in Euclidean terms.
    probes = np.array([[5.0, 0.1], [0.1, 0.2], [-0.2, -0.1]])
    assert retrieval_top1(gallery, ids, probes, ["a", "b", "c"]) == pytest.approx(100.0)
    assert retrieval_top1(gallery, ids, probes, ["a", "a", "a"]) == pytest.approx(100 / 3)
    assert retrieval_chance(["a", "a", "b", "c"], ["a", "b"]) == pytest.approx(100 * (0.5 + 0.25) / 2)
