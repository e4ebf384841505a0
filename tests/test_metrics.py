import numpy as np
import pytest

from splavu_ray.metrics import chance_cmap, cmap, leakage_drop, macro_f1, per_attribute_ap, relative_change, top1


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
