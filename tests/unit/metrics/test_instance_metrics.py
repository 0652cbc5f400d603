"""Instance metrics on hand-made label maps whose values are worked out by hand in the comments."""

import numpy as np
import pytest

from medlight.metrics.instance import aggregated_jaccard, instance_scores, overlaps


def two_boxes() -> np.ndarray:
    t = np.zeros((6, 10), int)
    t[1:3, 1:5] = 1  # 8 pixels
    t[1:5, 6:9] = 2  # 12 pixels
    return t


def test_identical_maps_score_one_whatever_the_ids() -> None:
    t = two_boxes()
    p = np.where(t == 1, 7, np.where(t == 2, 3, 0))  # other ids, same objects
    s = instance_scores(p, t)
    assert s["f1"] == s["pq"] == s["sq"] == s["aji"] == 1.0 and s["objects"] == s["found"] == 2


def test_hand_computed_partial_match() -> None:
    t = two_boxes()
    p = np.zeros_like(t)
    p[1:3, 1:4] = 5  # 6 of object 1's 8 pixels: IoU 6/8 = 0.75 -> match
    p[1:2, 6:9] = 6  # 3 of object 2's 12 pixels: IoU 3/12 = 0.25 -> no match
    p[5, 0:2] = 9  # 2 pixels on background: false positive
    s = instance_scores(p, t)
    # TP 1, FP 2 (ids 6, 9), FN 1 (object 2)
    assert s["f1"] == pytest.approx(2 / (2 + 2 + 1))
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert s["sq"] == pytest.approx(0.75)
    assert s["pq"] == pytest.approx(0.75 / (1 + 1 + 0.5))
    # AJI: object 1 pairs with 5 (I 6, U 8), object 2 with 6 (I 3, U 12); id 9 unused adds 2
    assert s["aji"] == pytest.approx((6 + 3) / (8 + 12 + 2))


def test_merged_prediction_is_one_false_positive_and_two_misses() -> None:
    t = two_boxes()
    p = (t > 0).astype(int)  # both objects predicted as one object of 20 pixels
    s = instance_scores(p, t)
    # object 2: IoU 12/20 = 0.6 matches; object 1 (8/20 = 0.4) is missed
    assert s["f1"] == pytest.approx(2 / (2 + 0 + 1)) and s["pq"] == pytest.approx(0.6 / 1.5)
    # AJI: both objects pair with the merged one: I 8 + 12, U 20 + 20
    assert s["aji"] == pytest.approx(20 / 40)


def test_empty_maps() -> None:
    empty = np.zeros((4, 4), int)
    assert instance_scores(empty, empty)["pq"] == 1.0 and aggregated_jaccard(empty, empty) == 1.0
    assert instance_scores(empty, two_boxes()[:4, :4])["f1"] == 0.0
    assert instance_scores(two_boxes()[:4, :4], empty)["aji"] == 0.0


def test_overlaps_counts_and_rejects_mismatched_shapes() -> None:
    inter, area_t, area_p = overlaps(np.array([[1, 1, 0], [2, 0, 0]]), np.array([[3, 0, 0], [3, 3, 0]]))
    assert inter.tolist() == [[1, 1]] and area_t.tolist() == [3] and area_p.tolist() == [2, 1]
    with pytest.raises(ValueError, match="shape"):
        overlaps(np.zeros((2, 2)), np.zeros((2, 3)))


def test_three_dimensional_maps() -> None:
    t = np.zeros((3, 4, 4), int)
    t[0] = 1
    t[2] = 2
    p = t.copy()
    p[2, 0, 0] = 0  # object 2 loses one of 16 voxels: IoU 15/16
    s = instance_scores(p, t)
    assert s["f1"] == 1.0 and s["sq"] == pytest.approx((1 + 15 / 16) / 2)
