"""Detection data transforms: label parsing, augmentation, crop, copy-paste, DB targets, resize.

Golden numbers are worked out by hand in the comments (square of side 40 at (20, 20):
A = 1600, L = 160, D = A (1 - 0.4^2) / L = 8.4).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ocr_core.data import TRANSFORMS
from ocr_core.data.transforms.copy_paste import CopyPaste
from ocr_core.data.transforms.det_augment import IaaAugment
from ocr_core.data.transforms.det_crop import EastRandomCropData, is_poly_outside_rect, split_regions
from ocr_core.data.transforms.det_label import DetLabelEncode
from ocr_core.data.transforms.det_resize import DetResizeForTest, det_resize_params
from ocr_core.data.transforms.det_targets import MakeBorderMap, MakeShrinkMap, edge_distance_map
from ocr_core.errors import ConfigError, DataError
from ocr_core.registry import check_kwargs

# numpy 2.x deprecations (e.g. int() of a 1-element array) must not slip through.
pytestmark = pytest.mark.filterwarnings("error")

SQUARE = np.array([[[20, 20], [60, 20], [60, 60], [20, 60]]], dtype=np.float32)


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _label(*boxes: tuple[str, list[list[float]]]) -> str:
    return json.dumps([{"transcription": t, "points": p} for t, p in boxes])


def _targets(polys: np.ndarray, tags: list[bool], h: int = 100, w: int = 100) -> dict:
    data = {"image": np.zeros((h, w, 3), np.uint8), "polys": polys.copy(), "ignore_tags": np.array(tags)}
    data = MakeBorderMap()(data)
    return MakeShrinkMap()(data)


# --------------------------------------------------------------------------------------------
# DetLabelEncode
# --------------------------------------------------------------------------------------------


def test_det_label_encode_pads_and_tags() -> None:
    tri = [[0, 0], [10, 0], [5, 8]]
    quad = _rect(1, 2, 30, 12)
    six = [[0, 0], [4, 0], [8, 0], [8, 5], [4, 5], [0, 5]]
    out = DetLabelEncode()({"label": _label(("abc", tri), ("###", quad), ("*", six), ("x", quad))})
    assert out["polys"].dtype == np.float32 and out["polys"].shape == (4, 6, 2)
    np.testing.assert_array_equal(out["polys"][0], [[0, 0], [10, 0], [5, 8], [5, 8], [5, 8], [5, 8]])
    np.testing.assert_array_equal(out["polys"][1, 4:], [[1, 12], [1, 12]])
    np.testing.assert_array_equal(out["polys"][2], six)
    assert out["texts"] == ["abc", "###", "*", "x"]
    assert out["ignore_tags"].dtype == bool
    assert out["ignore_tags"].tolist() == [False, True, True, False]


def test_det_label_encode_empty_returns_none() -> None:
    assert DetLabelEncode()({"label": "[]"}) is None


@pytest.mark.parametrize(
    "label",
    ['[{"transcription": "a", "points": [[0, 0], [1, 1]', '{"a": 1}', '[{"points": [[0, 0]]}]',
     '[{"transcription": "a", "points": [1, 2, 3]}]'],
)
def test_det_label_encode_malformed_raises_data_error(label: str) -> None:
    with pytest.raises(DataError, match="img/1.jpg"):
        DetLabelEncode()({"label": label, "img_path": "img/1.jpg"})


# --------------------------------------------------------------------------------------------
# MakeShrinkMap / MakeBorderMap
# --------------------------------------------------------------------------------------------


def test_shrink_map_square_is_inset_by_d() -> None:
    out = _targets(SQUARE, [False])
    sm = out["shrink_map"]
    assert sm.dtype == np.float32 and sm.shape == (100, 100)
    rows, cols = np.nonzero(sm)
    # Inset by D = 8.4: edges at 28.4 and 51.6; pyclipper works on integers, allow 1 px.
    for lo, hi in ((rows.min(), rows.max()), (cols.min(), cols.max())):
        assert 27.4 <= lo <= 29.4 and 50.6 <= hi <= 52.6
    assert sm[30:51, 30:51].all()
    assert sm.sum() == pytest.approx(24 * 24, abs=2 * 26)  # about (51.6 - 28.4 + 1)^2
    assert (out["shrink_mask"] == 1).all()
    assert out["ignore_tags"].tolist() == [False]


def test_border_map_square_golden_values() -> None:
    out = _targets(SQUARE, [False])
    tm, mask = out["threshold_map"], out["threshold_mask"]
    d = 1600 * (1 - 0.4**2) / 160
    assert d == pytest.approx(8.4)

    def expected(dist: float) -> float:
        return 0.3 + 0.4 * (1 - min(dist / d, 1.0))

    # Row 40 crosses the left edge x=20 and the right edge x=60; other edges are >= 20 away.
    for x, dist in [(20, 0), (16, 4), (24, 4), (13, 7), (27, 7), (60, 0), (63, 3), (56, 4)]:
        assert tm[40, x] == pytest.approx(expected(dist), abs=1e-5), x
    assert tm[40, 40] == pytest.approx(0.3)  # centre: 20 px from every edge
    assert tm[40, 5] == pytest.approx(0.3)  # outside the grown polygon
    # Outside corner: the nearest outline point is the vertex (20, 20).
    assert tm[16, 16] == pytest.approx(expected(np.hypot(4, 4)), abs=1e-5)
    assert tm.min() == pytest.approx(0.3) and tm.max() == pytest.approx(0.7)
    # The mask is the square grown by D with round corners.
    assert mask[40, 13:68].all() and mask[13:68, 40].all() and mask[20:61, 20:61].all()
    assert mask[40, 10] == 0 and mask[40, 70] == 0 and mask[10, 40] == 0
    assert mask[12, 12] == 0  # |(12,12)-(20,20)| = 11.3 > D: cut by the round join
    area = mask.sum()
    assert area == pytest.approx(40 * 40 + 4 * 40 * d + np.pi * d * d, rel=0.06)


def _cosine_rule_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PaddleOCR's per-edge formula (law of cosines), evaluated literally as a reference."""
    d1 = (xs - a[0]) ** 2 + (ys - a[1]) ** 2
    d2 = (xs - b[0]) ** 2 + (ys - b[1]) ** 2
    dab = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (dab - d1 - d2) / (2 * np.sqrt(d1 * d2))
        sin2 = np.nan_to_num(1 - cos**2)
        res = np.sqrt(np.abs(d1 * d2 * sin2 / dab))
    res = np.where(cos < 0, np.sqrt(np.minimum(d1, d2)), res)
    return np.nan_to_num(res)


def test_edge_distance_map_matches_cosine_rule_reference() -> None:
    poly = np.array([[12.3, 30.1], [70.2, 8.7], [88.9, 40.4], [25.5, 61.0]])
    ys, xs = np.mgrid[0:70, 0:100].astype(np.float64)
    ref = np.min([_cosine_rule_distance(xs, ys, poly[i], poly[(i + 1) % 4]) for i in range(4)], axis=0)
    got = edge_distance_map(poly, 0, 0, 100, 70)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    # A window gives the same values as the full map.
    np.testing.assert_allclose(edge_distance_map(poly, 10, 5, 30, 20), got[5:25, 10:40], atol=1e-4)


def test_small_and_ignored_text_masked_out() -> None:
    polys = np.array([_rect(20, 20, 60, 60), _rect(10, 80, 50, 85), _rect(70, 10, 90, 40)], np.float32)
    out = _targets(polys, [False, False, True])
    sm, smask, tmask = out["shrink_map"], out["shrink_mask"], out["threshold_mask"]
    # Box 1 is 5 px tall (< min_text_size 8): no shrink map, mask 0 over it, tagged ignore.
    assert sm[75:95, :].sum() == 0 and (smask[80:86, 10:51] == 0).all()
    # Box 2 is '###': mask 0, no shrink map and no border (border skips ignored boxes).
    assert (smask[10:41, 70:91] == 0).all() and sm[5:45, 66:95].sum() == 0
    assert tmask[25, 80] == 0
    # The small box still got a border (border runs before the small-text pass).
    assert tmask[82, 30] == 1
    assert smask[40, 40] == 1 and sm[40, 40] == 1
    assert out["ignore_tags"].tolist() == [False, True, True]


def test_shrink_map_clips_and_reorients_polygons() -> None:
    # Anti-clockwise (in image coordinates) and partly outside the image.
    poly = np.array([[[-10, 20], [-10, 60], [50, 60], [50, 20]]], np.float32)
    out = _targets(poly, [False])
    p = out["polys"][0]
    assert p[:, 0].min() == 0 and p[:, 0].max() == 50
    area = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], 1) - p[:, 1] * np.roll(p[:, 0], 1))
    assert area < 0  # PaddleOCR orientation after validate_polygons
    assert out["shrink_map"][40, 25] == 1


def test_target_ops_epoch_schedule() -> None:
    assert MakeShrinkMap(total_epoch=10, epoch=5).shrink_ratio == pytest.approx(0.5)
    assert MakeBorderMap(total_epoch=10).shrink_ratio == pytest.approx(0.4)


# --------------------------------------------------------------------------------------------
# DetResizeForTest
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, size",
    [
        ({}, (736, 1312)),  # 720 -> 736 (x1.0222): 1280 -> 1308 -> nearest 32 = 1312
        ({"limit_side_len": 960, "limit_type": "max"}, (544, 960)),  # 540 -> 544
        ({"limit_side_len": 640, "limit_type": "resize_long"}, (352, 640)),  # 360 -> 352
        # ratio 1; 720/32 = 22.5 rounds half to even (Python round, as PaddleOCR) -> 704
        ({"limit_side_len": 640, "limit_type": "min"}, (704, 1280)),
        ({"image_shape": [736, 1280]}, (736, 1280)),
        ({"image_shape": [640, 640], "keep_ratio": True}, (640, 1152)),  # 1137.8 -> ceil 32
        ({"resize_long": 960}, (640, 1024)),  # 540 -> 640, 960 -> 1024 (multiples of 128)
    ],
)
def test_det_resize_sizes(kwargs: dict, size: tuple[int, int]) -> None:
    assert det_resize_params(720, 1280, **kwargs) == size
    out = DetResizeForTest(**kwargs)({"image": np.zeros((720, 1280, 3), np.uint8)})
    assert out["image"].shape == (*size, 3)
    assert out["shape"].dtype == np.float32
    np.testing.assert_allclose(out["shape"], [720, 1280, size[0] / 720, size[1] / 1280], rtol=1e-6)


def test_det_resize_pads_small_images() -> None:
    img = np.full((10, 20, 3), 200, np.uint8)
    out = DetResizeForTest(limit_side_len=32, limit_type="max")({"image": img})
    assert out["image"].shape == (32, 32, 3)
    np.testing.assert_allclose(out["shape"], [10, 20, 1.0, 1.0])
    assert out["image"][:10, :20].min() == 200 and out["image"][12:, 22:].max() == 0


def test_det_resize_rejects_bad_limit_type() -> None:
    with pytest.raises(ConfigError):
        DetResizeForTest(limit_side_len=736, limit_type="middle")


# --------------------------------------------------------------------------------------------
# EastRandomCropData
# --------------------------------------------------------------------------------------------


def _scene() -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((300, 400, 3), np.uint8)
    boxes = [(30, 40, 110, 70), (180, 120, 260, 150), (300, 220, 370, 260)]
    for x0, y0, x1, y1 in boxes:
        img[y0:y1, x0:x1] = 255
    return img, np.array([_rect(*b) for b in boxes], np.float32)


def _white_inside(img: np.ndarray, poly: np.ndarray, tol: float) -> tuple[int, int]:
    """(#white pixels near ``poly`` but outside it grown by ``tol``, #white pixels inside)."""
    x0, y0 = poly.min(axis=0)
    x1, y1 = poly.max(axis=0)
    pad = 6
    win = img[max(0, int(y0) - pad) : int(y1) + pad, max(0, int(x0) - pad) : int(x1) + pad, 0]
    ys, xs = np.nonzero(win > 127)
    xs = xs + max(0, int(x0) - pad)
    ys = ys + max(0, int(y0) - pad)
    inside = (xs >= x0 - tol) & (xs <= x1 + tol) & (ys >= y0 - tol) & (ys <= y1 + tol)
    return int((~inside).sum()), int(inside.sum())


@pytest.mark.parametrize("keep_ratio", [True, False])
def test_east_random_crop_keeps_text_and_geometry(keep_ratio: bool) -> None:
    op = EastRandomCropData(size=[320, 256], max_tries=50, keep_ratio=keep_ratio)
    for seed in range(12):
        np.random.seed(seed)
        img, polys = _scene()
        out = op({"image": img, "polys": polys, "ignore_tags": np.zeros(3, bool), "texts": ["a", "b", "c"]})
        assert out["image"].shape == (256, 320, 3)
        assert len(out["polys"]) >= 1 and out["polys"].dtype == np.float32
        assert len(out["texts"]) == len(out["polys"]) == len(out["ignore_tags"])
        for poly in out["polys"]:
            outside, inside = _white_inside(out["image"], poly, tol=1.5)
            assert outside == 0
            if poly.min() >= 0 and poly[:, 0].max() < 320 and poly[:, 1].max() < 256:
                assert inside > 0.8 * np.prod(poly.max(0) - poly.min(0))


def test_east_random_crop_region_wise_sampling_on_numpy2() -> None:
    # Three boxes split the free columns/rows into several regions: the region-wise path runs.
    img, polys = _scene()
    free = np.nonzero(np.isin(np.arange(400), np.arange(30, 110), invert=True))[0]
    assert len(split_regions(free)) == 1  # the trailing run is dropped, as in PaddleOCR
    rng = np.random.default_rng(3)
    op = EastRandomCropData(size=[640, 640])
    op.rng = rng
    out = op({"image": img, "polys": polys, "ignore_tags": np.zeros(3, bool), "texts": ["a"] * 3})
    assert out["image"].shape == (640, 640, 3)


def test_east_random_crop_without_care_text_uses_whole_image() -> None:
    img, polys = _scene()
    out = EastRandomCropData(size=[200, 200])(
        {"image": img, "polys": polys, "ignore_tags": np.ones(3, bool), "texts": ["###"] * 3}
    )
    np.testing.assert_allclose(out["polys"], polys * 0.5)  # scale min(200/400, 200/300)
    assert out["ignore_tags"].tolist() == [True, True, True]


def test_is_poly_outside_rect() -> None:
    p = np.array(_rect(10, 10, 20, 20))
    assert not is_poly_outside_rect(p, 0, 0, 10, 10)  # touching counts as inside
    assert is_poly_outside_rect(p, 21, 0, 10, 50)


# --------------------------------------------------------------------------------------------
# IaaAugment
# --------------------------------------------------------------------------------------------


def _aug_scene() -> dict:
    img = np.zeros((120, 200, 3), np.uint8)
    img[40:80, 60:140] = 255  # pixels x 60..139, y 40..79
    polys = np.array([_rect(60, 40, 140, 80)], np.float32)
    return {"image": img, "polys": polys}


def _coverage(img: np.ndarray, poly: np.ndarray, tol_px: int) -> tuple[float, float]:
    """Fraction of white pixels inside ``poly`` (grown by tol) and of ``poly`` (shrunk) that is white."""
    white = img[:, :, 0] > 127
    grown = np.zeros(white.shape, np.uint8)
    cv2.fillPoly(grown, [np.round(poly).astype(np.int32)], 1)
    core = cv2.erode(grown, np.ones((2 * tol_px + 1,) * 2, np.uint8))
    grown = cv2.dilate(grown, np.ones((2 * tol_px + 1,) * 2, np.uint8))
    return float(grown[white].mean()), float(white[core > 0].mean())


def test_iaa_rotate_keeps_size_and_moves_points() -> None:
    data = IaaAugment([{"type": "Affine", "args": {"rotate": [25, 25]}}])(_aug_scene())
    assert data["image"].shape == (120, 200, 3)
    assert data["polys"].shape == (1, 4, 2)
    covered, filled = _coverage(data["image"], data["polys"][0], tol_px=2)
    assert covered == 1.0 and filled > 0.98


def test_iaa_flip_and_resize() -> None:
    flip = IaaAugment([{"type": "Fliplr", "args": {"p": 1.0}}])(_aug_scene())
    assert flip["polys"][0, :, 0].min() == pytest.approx(199 - 140, abs=1)
    covered, filled = _coverage(flip["image"], flip["polys"][0], tol_px=1)
    assert covered == 1.0 and filled == 1.0
    big = IaaAugment([{"type": "Resize", "args": {"size": [1.5, 1.5]}}])(_aug_scene())
    assert big["image"].shape == (180, 300, 3)
    np.testing.assert_allclose(big["polys"][0], np.array(_rect(60, 40, 140, 80)) * 1.5)


def test_iaa_default_pipeline_is_seeded_by_numpy() -> None:
    op = IaaAugment()
    outs = []
    for seed in (7, 7, 8):
        np.random.seed(seed)
        outs.append(op(_aug_scene()))
    assert np.array_equal(outs[0]["image"], outs[1]["image"])
    assert np.array_equal(outs[0]["polys"], outs[1]["polys"])
    assert not np.array_equal(outs[0]["polys"], outs[2]["polys"])
    for out in outs:
        covered, filled = _coverage(out["image"], out["polys"][0], tol_px=3)
        assert covered == 1.0 and filled > 0.97
    op.rng = np.random.default_rng(0)
    a = op(_aug_scene())["polys"]
    op.rng = np.random.default_rng(0)
    np.testing.assert_array_equal(a, op(_aug_scene())["polys"])


def test_iaa_rejects_unknown_augmenter() -> None:
    with pytest.raises(ConfigError, match="augmenter_args"):
        IaaAugment([{"type": "NoSuchAug", "args": {}}])


# --------------------------------------------------------------------------------------------
# CopyPaste
# --------------------------------------------------------------------------------------------


def test_copy_paste_adds_boxes_without_overlap() -> None:
    rng = np.random.default_rng(0)
    src = np.full((240, 320, 3), 40, np.uint8)
    src_polys = np.array([_rect(10, 10, 120, 40), _rect(150, 150, 300, 190)], np.float32)
    ext = rng.integers(100, 255, size=(200, 200, 3), dtype=np.uint8)
    ext_polys = np.array([_rect(10, 10 + 30 * i, 70, 30 + 30 * i) for i in range(5)], np.float32)
    ext_data = {"image": ext, "polys": ext_polys, "ignore_tags": np.array([False] * 4 + [True]),
                "texts": [f"e{i}" for i in range(5)]}
    op = CopyPaste(objects_paste_ratio=1.0)
    assert op.ext_data_num == 1
    op.rng = np.random.default_rng(1)
    data = {"image": src.copy(), "polys": src_polys.copy(), "ignore_tags": np.zeros(2, bool),
            "texts": ["a", "b"], "ext_data": [ext_data]}
    out = op(data)
    n = len(out["polys"])
    assert n > 2 and len(out["texts"]) == n and len(out["ignore_tags"]) == n
    assert out["polys"].dtype == np.float32 and out["polys"].shape[1:] == (4, 2)
    assert not out["ignore_tags"][2:].any()
    assert set(out["texts"][2:]) <= {"e0", "e1", "e2", "e3"}  # never the ignored box
    np.testing.assert_array_equal(out["polys"][:2], src_polys)
    for i in range(2, n):
        quad = out["polys"][i]
        x0, y0 = quad.min(0)
        x1, y1 = quad.max(0)
        for j in range(i):  # bbox of each pasted box touches no earlier polygon
            assert is_poly_outside_rect(out["polys"][j], x0, y0, x1 - x0, y1 - y0)
        # The pasted pixels are inside the quad: its centre now shows ext texture (>= 100).
        cx, cy = quad.mean(0).astype(int)
        assert out["image"][cy, cx].min() >= 90
    # Nothing outside the original and pasted boxes changed.
    touched = np.zeros(src.shape[:2], np.uint8)
    for quad in out["polys"][2:]:
        cv2.fillPoly(touched, [np.round(quad).astype(np.int32)], 1)
    touched = cv2.dilate(touched, np.ones((5, 5), np.uint8))
    assert (out["image"][touched == 0] == 40).all()


def test_copy_paste_without_ext_data_is_identity() -> None:
    data = {"image": np.zeros((10, 10, 3), np.uint8), "polys": SQUARE.copy(), "ignore_tags": np.zeros(1, bool)}
    assert CopyPaste()(dict(data))["polys"] is data["polys"]


# --------------------------------------------------------------------------------------------
# Registry / config schema and the v3 train pipeline
# --------------------------------------------------------------------------------------------


def test_config_schema_accepts_paddle_keys() -> None:
    check_kwargs(EastRandomCropData, {"size": [960, 960], "max_tries": 50, "keep_ratio": True}, "t")
    check_kwargs(IaaAugment, {"augmenter_args": [{"type": "Fliplr", "args": {"p": 0.5}}]}, "t")
    check_kwargs(MakeBorderMap, {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}, "t")
    check_kwargs(MakeShrinkMap, {"shrink_ratio": 0.4, "min_text_size": 8}, "t")
    check_kwargs(CopyPaste, {"objects_paste_ratio": 0.2, "limit_paste": True}, "t")
    check_kwargs(DetResizeForTest, {"image_shape": [736, 1280], "keep_ratio": False}, "t")
    with pytest.raises(ConfigError):
        check_kwargs(EastRandomCropData, {"sizes": [960, 960]}, "t")
    for name in ("DetLabelEncode", "IaaAugment", "EastRandomCropData", "CopyPaste", "MakeBorderMap",
                 "MakeShrinkMap", "DetResizeForTest"):
        assert name in TRANSFORMS


def test_v3_train_pipeline_end_to_end() -> None:
    np.random.seed(0)
    img = np.zeros((180, 320, 3), np.uint8)
    boxes = [(f"t{i}", _rect(20 + 70 * (i % 4), 20 + 60 * (i // 4), 75 + 70 * (i % 4), 45 + 60 * (i // 4)))
             for i in range(8)]
    for _, b in boxes:
        img[int(b[0][1]) : int(b[2][1]), int(b[0][0]) : int(b[2][0])] = 255
    data = DetLabelEncode()({"image": img, "label": _label(*boxes)})
    for op in (IaaAugment(), EastRandomCropData(size=[160, 160], max_tries=50), MakeBorderMap(), MakeShrinkMap()):
        data = op(data)
    assert data["image"].shape == (160, 160, 3)
    for key in ("threshold_map", "threshold_mask", "shrink_map", "shrink_mask"):
        assert data[key].shape == (160, 160) and data[key].dtype == np.float32
    assert 0.3 - 1e-6 <= data["threshold_map"].min() and data["threshold_map"].max() <= 0.7 + 1e-6
