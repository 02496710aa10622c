"""DBPostProcess on synthetic probability maps with known rotated text boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
import pytest
from shapely.geometry import Polygon

from ocr_core.build import build_post_process
from ocr_core.errors import ConfigError
from ocr_core.postprocess import POSTPROCESS
from ocr_core.postprocess.db_postprocess import (
    DBPostProcess,
    DistillationDBPostProcess,
    box_score_fast,
    box_score_slow,
    get_mini_boxes,
    unclip,
)

H, W = 128, 160
# Text boxes (centre, size, angle) in map coordinates.
# Big enough that pixel discretisation keeps IoU(detected, text box) above 0.9.
RECTS = [((50.0, 40.0), (80.0, 36.0), 15.0), ((104.0, 88.0), (72.0, 36.0), -10.0)]


def text_quad(rect) -> np.ndarray:
    return cv2.boxPoints(rect).astype(np.float64)


def shrink(quad: np.ndarray, ratio: float = 0.4) -> np.ndarray:
    """What MakeShrinkMap draws: the text polygon shrunk by D = A(1 - r^2)/L."""
    poly = Polygon(quad)
    d = poly.area * (1 - ratio**2) / poly.length
    off = pyclipper.PyclipperOffset()
    off.AddPath(quad.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(off.Execute(-d)[0], np.float64)


def expected_box(rect, quad: bool = True, unclip_ratio: float = 1.5) -> np.ndarray:
    """The drawn shrunk region re-expanded by D = A * unclip_ratio / L (what DB should return),
    as its min-area rectangle for quads. DB's unclip (1.5) does not exactly undo the label
    shrink (0.4), so this, not the original text box, is the target.
    """
    poly = np.round(shrink(text_quad(rect)))
    p = Polygon(poly)
    off = pyclipper.PyclipperOffset()
    off.AddPath(poly.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = np.array(off.Execute(p.area * unclip_ratio / p.length)[0], np.float32)
    return cv2.boxPoints(cv2.minAreaRect(grown)) if quad else grown


def make_map(rects=RECTS, value: float = 0.9, extra=()) -> np.ndarray:
    prob = np.full((H, W), 0.05, np.float32)
    for rect in rects:
        cv2.fillPoly(prob, [np.round(shrink(text_quad(rect))).astype(np.int32)], value)
    for pts, v in extra:
        cv2.fillPoly(prob, [np.asarray(pts, np.int32)], v)
    return prob[None, None]  # [1, 1, H, W]


def iou(a, b) -> float:
    pa, pb = Polygon(np.asarray(a, float).reshape(-1, 2)), Polygon(np.asarray(b, float).reshape(-1, 2))
    return pa.intersection(pb).area / pa.union(pb).area


def match_all(found, expected, min_iou=0.92):
    assert len(found) == len(expected)
    for exp in expected:
        best = max(iou(f, exp) for f in found)
        assert best > min_iou


def shape_list(src_h=H, src_w=W):
    return np.array([[src_h, src_w, src_h / H, src_w / W]], np.float32)


@pytest.mark.parametrize("score_mode", ["fast", "slow"])
def test_quad_recovers_rotated_rects(score_mode):
    post = DBPostProcess(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, score_mode=score_mode)
    out = post({"maps": make_map()}, shape_list())
    assert len(out) == 1
    points, scores = out[0]["points"], out[0]["scores"]
    assert points.dtype == np.int32 and points.shape == (2, 4, 2)
    assert scores.dtype == np.float32 and scores.shape == (2,)
    if score_mode == "slow":  # mean inside the contour: exactly the drawn pixels
        np.testing.assert_allclose(scores, 0.9, rtol=1e-6)
    else:  # mean inside the truncated min-area box, which takes in some 0.05 background
        assert np.all(scores > 0.75) and np.all(scores < 0.9)
    match_all(points, [expected_box(r) for r in RECTS])


def test_poly_recovers_rotated_rects():
    post = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5, box_type="poly")
    out = post({"maps": make_map()}, shape_list())[0]
    assert isinstance(out["points"], list) and len(out["points"]) == 2
    assert all(p.dtype == np.int32 and p.ndim == 2 and p.shape[1] == 2 for p in out["points"])
    match_all(out["points"], [expected_box(r, quad=False) for r in RECTS])


@pytest.mark.parametrize("box_type", ["quad", "poly"])
def test_rescale_to_a_different_source_size(box_type):
    src_h, src_w = 96, 240  # y x1.5, x x2.5
    post = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5, box_type=box_type)
    found = post({"maps": make_map()}, shape_list(src_h, src_w))[0]["points"]
    scale = np.array([src_w / W, src_h / H])
    expected = [expected_box(r, quad=box_type == "quad") * scale for r in RECTS]
    match_all(found, expected)
    for f in found:
        assert f[:, 0].min() >= 0 and f[:, 0].max() <= src_w and f[:, 1].max() <= src_h


def test_rescale_is_round_of_bitmap_ratio():
    prob = make_map()
    base = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)
    native = base({"maps": prob}, shape_list())[0]["points"]
    doubled = base({"maps": prob}, shape_list(2 * H, 2 * W))[0]["points"]
    # round(x / W * 2W) vs 2 * round(x / W * W): the same point, rounded once or before doubling
    assert np.abs(doubled.astype(int) - 2 * native.astype(int)).max() <= 1
    assert not np.array_equal(doubled % 2, np.zeros_like(doubled))  # really rounded at 2x, not 2*round


def test_box_thresh_filters_low_score_regions():
    faint = [(10, 100), (40, 100), (40, 115), (10, 115)]
    prob = make_map(extra=[(faint, 0.5)])
    kept = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)({"maps": prob}, shape_list())[0]
    assert len(kept["points"]) == 2
    loose = DBPostProcess(box_thresh=0.4, unclip_ratio=1.5)({"maps": prob}, shape_list())[0]
    assert len(loose["points"]) == 3
    assert sorted(loose["scores"].round(2).tolist())[0] == pytest.approx(0.5, abs=0.02)


def test_min_size_filters_tiny_regions():
    dot = [(150, 5), (151, 5), (151, 6), (150, 6)]  # 2x2 pixels: short side < 3
    prob = make_map(extra=[(dot, 0.95)])
    out = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)({"maps": prob}, shape_list())[0]
    assert len(out["points"]) == 2
    bar = [(130, 2), (150, 2), (150, 5), (130, 5)]  # short side 4 >= 3 but the unclipped box is kept
    prob = make_map(extra=[(bar, 0.95)])
    out = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)({"maps": prob}, shape_list())[0]
    assert len(out["points"]) == 3


def test_empty_map_and_three_channel_tensor_input():
    torch = pytest.importorskip("torch")
    empty = DBPostProcess()({"maps": np.zeros((1, 1, H, W), np.float32)}, shape_list())[0]
    assert empty["points"].shape == (0, 4, 2) and empty["scores"].shape == (0,)
    three = np.concatenate([make_map(), np.zeros((1, 2, H, W), np.float32)], axis=1)
    maps = torch.from_numpy(np.concatenate([three, three], 0)).requires_grad_()
    shapes = torch.from_numpy(np.concatenate([shape_list(), shape_list(2 * H, 2 * W)]))
    out = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)({"maps": maps}, shapes)
    assert len(out) == 2 and all(len(o["points"]) == 2 for o in out)


def test_use_dilation_grows_boxes():
    prob = make_map()
    plain = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5)({"maps": prob}, shape_list())[0]["points"]
    dil = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5, use_dilation=True)({"maps": prob}, shape_list())[0]
    assert len(dil["points"]) == 2
    area = sum(Polygon(p).area for p in plain)
    assert sum(Polygon(p).area for p in dil["points"]) > area


def test_pure_functions():
    box, sside = get_mini_boxes(np.array([[[10, 5]], [[30, 5]], [[30, 12]], [[10, 12]]], np.int32))
    np.testing.assert_allclose(box, [[10, 5], [30, 5], [30, 12], [10, 12]])  # TL, TR, BR, BL
    assert sside == pytest.approx(7.0)
    pred = np.zeros((20, 40), np.float32)
    pred[5:13, 10:31] = 0.8
    assert box_score_fast(pred, box) == pytest.approx(0.8)
    assert box_score_slow(pred, np.array([[10, 5], [30, 5], [30, 12], [10, 12]])) == pytest.approx(0.8)
    # unclip of a 20x10 rectangle by D = 200 * 1.5 / 60 = 5: round-join expansion
    pieces = unclip(np.array([[0, 0], [20, 0], [20, 10], [0, 10]], np.float32), 1.5)
    assert len(pieces) == 1
    expanded = Polygon(pieces[0])
    assert expanded.area == pytest.approx(200 + 60 * 5 + np.pi * 25, rel=0.02)
    assert pieces[0][:, 0].min() == -5 and pieces[0][:, 0].max() == 25


def test_distillation_post_process_and_registry():
    post = build_post_process({"PostProcess": {
        "name": "DistillationDBPostProcess", "model_name": ["Student", "Student2"], "key": "head_out", "thresh": 0.3,
        "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5}})
    assert isinstance(post, DistillationDBPostProcess)
    prob = make_map()
    out = post({"Student": {"maps": prob}, "Student2": {"maps": np.zeros_like(prob)}, "Teacher": {}}, shape_list())
    assert set(out) == {"Student", "Student2"}
    assert len(out["Student"][0]["points"]) == 2 and len(out["Student2"][0]["points"]) == 0
    assert DistillationDBPostProcess().model_name == ["student"]
    assert "DBPostProcess" in POSTPROCESS
    with pytest.raises(ConfigError, match="score_mode"):
        build_post_process({"PostProcess": {"name": "DBPostProcess", "score_mode": "medium"}})


# --- the batched implementation against the per-box reference (PaddleOCR's loop, written with
# the scalar functions above), on maps with many touching, tiny and rotated regions.


def _reference(pred, bitmap, dest_w, dest_h, box_thresh, ratio, box_type, score_mode):
    h, w = bitmap.shape
    contours, _ = cv2.findContours(bitmap.astype(np.uint8) * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours[:1000]:
        if box_type == "poly":
            points = cv2.approxPolyDP(contour, 0.002 * cv2.arcLength(contour, True), True).reshape(-1, 2)
            if points.shape[0] < 4:
                continue
            score = box_score_fast(pred, points)
        else:
            points, sside = get_mini_boxes(contour)
            if sside < 3:
                continue
            score = box_score_fast(pred, points) if score_mode == "fast" else box_score_slow(pred, contour)
        if box_thresh > score:
            continue
        pieces = unclip(points, ratio)
        if len(pieces) != 1:
            continue
        box, sside = get_mini_boxes(pieces[0])
        if sside < 5:
            continue
        pts = box if box_type == "quad" else pieces[0]
        x = np.clip(np.round(pts[:, 0] / w * np.float64(dest_w)), 0, dest_w)
        y = np.clip(np.round(pts[:, 1] / h * np.float64(dest_h)), 0, dest_h)
        out.append((np.stack([x, y], 1).astype(np.int32), score))
    return out


def _busy_map(seed, h=150, w=210):
    """Word-like regions on text lines (some touching), background noise crossing the threshold
    in specks, a few low-score regions."""
    rng = np.random.default_rng(seed)
    prob = cv2.resize(rng.random((h // 3, w // 3), dtype=np.float32) * 0.34, (w, h))
    y = 4.0
    while y < h - 12:
        line_h, x = rng.uniform(4, 14), rng.uniform(0, 10)
        while x < w - 10:
            width = rng.uniform(3, 50)
            rect = ((x + width / 2, y + line_h / 2), (width, line_h), rng.uniform(-8, 8))
            cv2.fillPoly(prob, [np.round(cv2.boxPoints(rect)).astype(np.int32)], float(rng.uniform(0.45, 0.97)))
            x += width + rng.uniform(4, 15)
        y += line_h + rng.uniform(6, 12)
    return cv2.GaussianBlur(prob, (3, 3), 0.8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("box_type", "score_mode", "dilate"), [
    ("quad", "fast", False), ("quad", "fast", True), ("quad", "slow", False), ("poly", "fast", False),
    ("poly", "fast", True)])
def test_batched_boxes_equal_the_per_box_reference(seed, box_type, score_mode, dilate):
    pred = _busy_map(seed)
    dest = (333.0, 251.0)  # source w, h: rescaling rounds
    post = DBPostProcess(box_thresh=0.6, unclip_ratio=1.5, box_type=box_type, score_mode=score_mode,
                         use_dilation=dilate)
    got = post({"maps": pred[None, None]}, np.array([[dest[1], dest[0], 1.0, 1.0]]))[0]
    bitmap = (pred > 0.3).astype(np.uint8)
    if dilate:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    want = _reference(pred, bitmap, dest[0], dest[1], 0.6, 1.5, box_type, score_mode)
    assert len(want) >= 5  # the map really exercises the loop
    assert len(got["points"]) == len(want)
    for found, (expected, _) in zip(got["points"], want):
        np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(got["scores"], [s for _, s in want], rtol=1e-6)


def test_prefilter_keeps_every_box_the_reference_keeps():
    # 3x3 and 4x4 squares, thin diagonal bars: around the short-side limit of 3 pixels
    prob = np.zeros((60, 80), np.float32)
    for x, size in [(2, 3), (10, 4), (20, 5), (30, 6)]:
        prob[5 : 5 + size, x : x + size] = 0.9
    cv2.line(prob, (40, 40), (75, 55), 0.9, 3)
    cv2.line(prob, (5, 55), (30, 30), 0.9, 4)
    bitmap = (prob > 0.3).astype(np.uint8)
    for box_type in ("quad", "poly"):
        got = DBPostProcess(box_thresh=0.5, unclip_ratio=1.5, box_type=box_type)(
            {"maps": prob[None, None]}, np.array([[60.0, 80.0, 1.0, 1.0]]))[0]
        want = _reference(prob, bitmap, 80.0, 60.0, 0.5, 1.5, box_type, "fast")
        assert len(got["points"]) == len(want) >= 3
        for found, (expected, _) in zip(got["points"], want):
            np.testing.assert_array_equal(found, expected)
