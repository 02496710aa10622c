"""DetMetric / DetectionIoUEvaluator / DistillationMetric on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from ocr_core.build import build_metric
from ocr_core.metrics import METRICS
from ocr_core.metrics.det_metric import DetectionIoUEvaluator, DetMetric, evaluate_image
from ocr_core.metrics.distillation_metric import DistillationMetric


def rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


BOWTIE = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], np.float32)  # self-intersecting


def test_perfect_match():
    r = evaluate_image([rect(0, 0, 10, 5), rect(20, 0, 30, 5)], [False, False],
                       [rect(20, 0, 30, 5), rect(0, 0, 10, 5)])
    assert (r["gt_care"], r["det_care"], r["det_matched"]) == (2, 2, 2)
    assert r["pairs"] == [(0, 1), (1, 0)]
    assert r["ious"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert r["missed"] == [] and r["false_positive"] == []


def test_dont_care_gt_and_det():
    gts = [rect(0, 0, 10, 10), rect(20, 0, 30, 10)]
    ignore = [False, True]
    dets = [
        rect(0, 0, 10, 10),  # matches GT0
        rect(21, 1, 29, 9),  # fully inside the don't-care GT1: area precision 1 > 0.5 -> don't care
        rect(15, 0, 25, 10),  # exactly half over GT1: 0.5 is not > 0.5 -> a care false positive
    ]
    r = evaluate_image(gts, ignore, dets)
    assert r["gt_dont_care"] == [1] and r["det_dont_care"] == [1]
    assert (r["gt_care"], r["det_care"], r["det_matched"]) == (1, 2, 1)
    assert r["false_positive"] == [2] and r["missed"] == []


def test_invalid_polygons_are_skipped():
    r = evaluate_image([BOWTIE, rect(0, 0, 10, 10)], [False, False], [BOWTIE, rect(0, 0, 10, 10)])
    assert r["gt_invalid"] == [0] and r["det_invalid"] == [0]
    assert (r["gt_care"], r["det_care"], r["det_matched"]) == (1, 1, 1)
    assert r["pairs"] == [(1, 1)]
    # too few points is invalid too, not a crash
    r = evaluate_image([np.array([[0, 0], [1, 1]], np.float32)], [False], [])
    assert r["gt_invalid"] == [0] and r["gt_care"] == 0


def test_greedy_matching_in_index_order_not_best_iou():
    # GT0 = x[0,10], GT1 = x[6,16]; det0 = x[3,13] has IoU 7/13 = 0.538 with both GTs,
    # det1 = GT0 exactly (IoU 1), IoU(det1, GT1) = 4/16.
    # Best-IoU / optimal matching would pair GT0-det1 and GT1-det0 (2 matches). The ICDAR
    # greedy loop visits GT0 x det0 first and takes it, leaving GT1 and det1 unmatched.
    gts = [rect(0, 0, 10, 10), rect(6, 0, 16, 10)]
    dets = [rect(3, 0, 13, 10), rect(0, 0, 10, 10)]
    r = evaluate_image(gts, [False, False], dets)
    assert r["pairs"] == [(0, 0)]
    assert r["ious"][0] == pytest.approx(7 / 13)
    assert r["missed"] == [1] and r["false_positive"] == [1]
    m = DetMetric()
    m([{"points": np.stack(dets)}], [None, None, np.stack(gts)[None], np.array([[False, False]])])
    assert m.get_metric() == {"precision": 0.5, "recall": 0.5, "hmean": 0.5}


def test_iou_threshold_is_strict():
    r = evaluate_image([rect(0, 0, 10, 10)], [False], [rect(0, 0, 5, 10)])  # IoU exactly 0.5
    assert r["det_matched"] == 0
    r = DetectionIoUEvaluator(iou_constraint=0.4).evaluate_image([rect(0, 0, 10, 10)], [False], [rect(0, 0, 5, 10)])
    assert r["det_matched"] == 1


def test_empty_predictions_and_empty_gt():
    m = DetMetric()
    m([{"points": np.zeros((0, 4, 2), np.int32)}], [None, None, np.stack([rect(0, 0, 9, 9)]), np.array([False])])
    assert m.counters() == {"gt_care": 1.0, "det_care": 0.0, "det_matched": 0.0}
    assert m.get_metric() == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    m([{"points": np.stack([rect(0, 0, 9, 9)])}], [None, None, np.zeros((0, 4, 2), np.float32), np.zeros(0, bool)])
    assert m.counters() == {"gt_care": 0.0, "det_care": 1.0, "det_matched": 0.0}
    assert m.get_metric() == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}
    m([{"points": []}], [None, None, [], []])
    assert m.get_metric() == {"precision": 0.0, "recall": 0.0, "hmean": 0.0}


def _two_images():
    # image A: 1 GT matched by 1 det (P = R = 1); image B: 3 GTs, 1 det that misses all of them.
    gts = [np.stack([rect(0, 0, 10, 10)]), np.stack([rect(0, 0, 10, 10), rect(20, 0, 30, 10), rect(40, 0, 50, 10)])]
    ignores = [np.array([False]), np.array([False, False, False])]
    preds = [{"points": np.stack([rect(0, 0, 10, 10)]).astype(np.int32)},
             {"points": np.stack([rect(60, 0, 70, 10)]).astype(np.int32)}]
    return preds, gts, ignores


def test_micro_average_across_images_batch_of_two():
    preds, gts, ignores = _two_images()
    m = build_metric({"Metric": {"name": "DetMetric", "main_indicator": "hmean"}})
    m(preds, [None, None, gts, ignores])  # batch size 2: per-image lists
    assert m.counters() == {"gt_care": 4.0, "det_care": 2.0, "det_matched": 1.0}
    res = m.get_metric()
    # micro: R = 1/4, P = 1/2, H = 1/3; the macro mean of per-image hmeans would be (1 + 0)/2
    assert res["recall"] == pytest.approx(0.25)
    assert res["precision"] == pytest.approx(0.5)
    assert res["hmean"] == pytest.approx(1 / 3)
    assert m.get_metric()["hmean"] == 0.0  # get_metric reset the state


def test_batch_of_one_calls_and_rank_counters_agree():
    preds, gts, ignores = _two_images()
    rank0, rank1 = DetMetric(), DetMetric()
    rank0([preds[0]], [None, None, gts[0][None], ignores[0][None]])  # collated [1, N, 4, 2]
    rank1([preds[1]], [None, None, gts[1], ignores[1]])  # un-collated [N, 4, 2]
    total = {k: rank0.counters()[k] + rank1.counters()[k] for k in rank0.counters()}
    merged = DetMetric()
    merged.set_counters(total)
    assert merged.get_metric()["hmean"] == pytest.approx(1 / 3)


def test_tensor_batch():
    torch = pytest.importorskip("torch")
    preds, gts, ignores = _two_images()
    m = DetMetric()
    m([preds[1]], [None, None, torch.from_numpy(gts[1][None]), torch.from_numpy(ignores[1][None])])
    assert m.counters() == {"gt_care": 3.0, "det_care": 1.0, "det_matched": 0.0}


def test_distillation_metric_naming_and_counters():
    preds, gts, ignores = _two_images()
    m = build_metric({"Metric": {"name": "DistillationMetric", "base_metric_name": "DetMetric",
                                 "main_indicator": "hmean", "key": "Student"}})
    assert isinstance(m, DistillationMetric) and m.main_indicator == "hmean"
    m({"Student": preds[0:1], "Student2": preds[1:2]}, [None, None, gts[0][None], ignores[0][None]])
    counters = m.counters()
    assert counters == {
        "Student/gt_care": 1.0, "Student/det_care": 1.0, "Student/det_matched": 1.0,
        "Student2/gt_care": 1.0, "Student2/det_care": 1.0, "Student2/det_matched": 0.0,
    }
    other = DistillationMetric(key="Student", base_metric_name="DetMetric", main_indicator="hmean")
    other.set_counters(counters)
    for metric in (m, other):
        res = metric.get_metric()
        assert res == {"precision": 1.0, "recall": 1.0, "hmean": 1.0,
                       "Student2_precision": 0.0, "Student2_recall": 0.0, "Student2_hmean": 0.0}
    assert "DetMetric" in METRICS and "DistillationMetric" in METRICS
