"""Pareto front and hypervolume on hand-made points (privacy cMAP: min, utility: max)."""

import numpy as np
import pytest

from splavu_ray.search.pareto import hypervolume, normalized_hypervolume, pareto_mask, to_minimization

MIN_MAX = ["min", "max"]


def test_pareto_mask_keeps_non_dominated_points():
    #            cMAP  top-1
    pts = [[50.0, 80.0],   # front
           [40.0, 70.0],   # front
           [45.0, 60.0],   # dominated by (40, 70)
           [60.0, 90.0],   # front
           [60.0, 85.0],   # dominated by (60, 90): equal cMAP, worse utility
           [40.0, 70.0]]   # duplicate of a front point: kept
    assert pareto_mask(pts, MIN_MAX).tolist() == [True, True, False, True, False, True]


def test_pareto_mask_three_objectives():
    pts = [[50, 80, 30], [50, 80, 20], [40, 60, 10], [55, 75, 25]]
    # (50,80,20) is dominated by (50,80,30) (third objective is maximised); (55,75,25) by (50,80,30)
    assert pareto_mask(pts, ["min", "max", "max"]).tolist() == [True, False, True, False]


def test_to_minimization_flips_maximised_objectives():
    np.testing.assert_array_equal(to_minimization([[1.0, 2.0]], MIN_MAX), [[1.0, -2.0]])


def test_hypervolume_two_objectives_by_hand():
    # Reference: cMAP 100 (worst), top-1 0 (worst). Front (40, 70), (50, 80), (60, 90):
    # staircase area = 70*(100-40) + (80-70)*(100-50) + (90-80)*(100-60) = 4200 + 500 + 400
    pts = [[40, 70], [50, 80], [60, 90], [45, 60]]
    assert hypervolume(pts, MIN_MAX, [100, 0]) == pytest.approx(5100.0)
    # A point that does not dominate the reference adds nothing.
    assert hypervolume(pts + [[120, 99]], MIN_MAX, [100, 0]) == pytest.approx(5100.0)
    assert hypervolume(np.zeros((0, 2)), MIN_MAX, [100, 0]) == 0.0


def test_hypervolume_three_objectives_by_hand():
    # Two boxes from the reference (1, 0, 0): (1-0.5)*0.4*0.6 = 0.12 and (1-0.2)*0.6*0.3 = 0.144,
    # overlapping in (1-0.5)*0.4*0.3 = 0.06 -> union 0.204.
    pts = [[0.5, 0.4, 0.6], [0.2, 0.6, 0.3]]
    assert hypervolume(pts, ["min", "max", "max"], [1, 0, 0]) == pytest.approx(0.204)


def test_normalized_hypervolume_is_the_dominated_fraction_of_the_box():
    pts = [[40, 70], [50, 80], [60, 90]]
    assert normalized_hypervolume(pts, MIN_MAX, [100, 0], [0, 100]) == pytest.approx(5100 / 10000)
    # The ideal point dominates the whole box; values beyond the ideal are clipped to it.
    assert normalized_hypervolume([[0, 100]], MIN_MAX, [100, 0], [0, 100]) == pytest.approx(1.0)
    assert normalized_hypervolume([[-5, 120]], MIN_MAX, [100, 0], [0, 100]) == pytest.approx(1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2 objectives but 3 directions"):
        pareto_mask([[1, 2]], ["min", "max", "max"])
    with pytest.raises(ValueError, match="'min' or 'max'"):
        pareto_mask([[1, 2]], ["min", "up"])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[np.nan, 2]], MIN_MAX, [100, 0])
    with pytest.raises(ValueError, match="must differ"):
        normalized_hypervolume([[1, 2]], MIN_MAX, [100, 0], [100, 100])
