"""EAST: target maker, loss, locality-aware NMS and post-processing on hand-built inputs, and a
round trip (synthetic scenes -> training targets -> post-processing -> DetMetric) with no model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from shapely.geometry import MultiPoint

from ocr_core.data.synth_scenes import render_det_sample
from ocr_core.data.transforms.det_resize import DetResizeForTest
from ocr_core.data.transforms.east_process import EASTProcessTrain, generate_quad
from ocr_core.losses.det_east_loss import EASTLoss
from ocr_core.metrics.det_metric import DetMetric
from ocr_core.postprocess.east_postprocess import EASTPostProcess, nms_locality, quad_iou

RECT = np.array([[8, 16], [56, 16], [56, 40], [8, 40]], np.float32)  # 48 x 24, clockwise from top-left


def test_target_maker_on_a_known_rectangle() -> None:
    score, geo, mask = generate_quad((64, 64), RECT[None], np.array([False]), min_text_size=10)
    # every vertex moves 0.3 * 24 = 7.2 px inwards along both edges: x 15.2..48.8, y 23.2..32.8 -> int
    ys, xs = np.nonzero(score)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (15, 48, 23, 32)
    assert score.sum() == 34 * 10
    np.testing.assert_allclose(geo[28, 30], [22, 12, -26, 12, -26, -12, 22, -12, 1 / 24], rtol=1e-6)
    assert geo[10, 10].sum() == 0 and mask.min() == 1
    _, _, mask_ignored = generate_quad((64, 64), RECT[None], np.array([True]), min_text_size=10)
    assert mask_ignored[16:41, 8:57].max() == 0 and mask_ignored.sum() == 64 * 64 - 49 * 25
    _, _, mask_small = generate_quad((64, 64), RECT[None], np.array([False]), min_text_size=30)
    assert mask_small[28, 30] == 0


def test_process_train_outputs_stride4_targets() -> None:
    np.random.seed(0)
    img = np.full((120, 160, 3), 200, np.uint8)
    polys = np.array([[[20, 30], [120, 30], [120, 60], [20, 60]]], np.float32)
    op = EASTProcessTrain(image_shape=[128, 128], background_ratio=0.0)
    out = None
    for _ in range(20):
        out = op({"image": img, "polys": polys.copy(), "ignore_tags": np.array([False])})
        if out is not None:
            break
    assert out is not None
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == np.float32
    assert out["score_map"].shape == (1, 32, 32) and out["geo_map"].shape == (9, 32, 32)
    assert out["training_mask"].shape == (1, 32, 32) and out["score_map"].max() == 1


def test_rotate_ratio_turns_the_random_rotation_off() -> None:
    img = np.full((120, 160, 3), 200, np.uint8)
    polys = np.array([[[20, 30], [120, 30], [120, 60], [20, 60]]], np.float32)

    def upright(op: EASTProcessTrain) -> list[bool]:
        np.random.seed(3)
        outs = (op({"image": img, "polys": polys.copy(), "ignore_tags": np.array([False])}) for _ in range(40))
        spans = [np.ptp(np.nonzero(o["score_map"][0]), axis=1) for o in outs if o is not None]
        return [bool(dx > dy) for dy, dx in spans]

    never = upright(EASTProcessTrain(image_shape=[128, 128], background_ratio=0.0, rotate_ratio=0.0))
    assert len(never) == 40 and all(never)
    assert sum(upright(EASTProcessTrain(image_shape=[128, 128], background_ratio=0.0))) < 35  # Paddle's 0.5


def _maps(b: int = 1, h: int = 8, w: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    score = torch.zeros(b, 1, h, w)
    score[..., 2:5, 2:6] = 1.0  # 12 text pixels
    geo = torch.zeros(b, 9, h, w)
    geo[:, :8] = torch.arange(8, dtype=torch.float32).view(1, 8, 1, 1) * 3.0
    geo[:, 8] = 0.5 * score[:, 0]
    return score, geo, torch.ones(b, 1, h, w)


def test_east_loss_on_hand_built_maps() -> None:
    score, geo, mask = _maps()
    batch = [torch.zeros(1), score, geo, mask]
    loss = EASTLoss()
    perfect = loss({"f_score": score, "f_geo": geo[:, :8]}, batch)
    assert perfect["loss"].item() == pytest.approx(0.0, abs=1e-6)
    # |d| = 2 >= score 1: linear branch 2 - 0.5 = 1.5; per pixel sum_c 0.5/8 * 1.5 = 0.75; mean over 64
    far = loss({"f_score": score, "f_geo": geo[:, :8] + 2.0}, batch)
    assert far["smooth_l1_loss"].item() == pytest.approx(12 * 0.75 / 64, rel=1e-6)
    # |d| = 0.5 < 1: quadratic branch 0.25 -> per pixel 0.125
    near = loss({"f_score": score, "f_geo": geo[:, :8] - 0.5}, batch)
    assert near["smooth_l1_loss"].item() == pytest.approx(12 * 0.125 / 64, rel=1e-6)
    # dice: prediction 0.5 everywhere -> 1 - 2 * 6 / (32 + 12) , times 0.01
    half = loss({"f_score": torch.full_like(score, 0.5), "f_geo": geo[:, :8]}, batch)
    assert half["dice_loss"].item() == pytest.approx(0.01 * (1 - 12 / 44), rel=1e-5)


def _row(quad: np.ndarray, s: float) -> np.ndarray:
    return np.concatenate([np.asarray(quad, np.float64).reshape(8), [s]])


def test_locality_nms_merges_overlapping_quads() -> None:
    a = _row(RECT, 0.9)
    b = _row(RECT + [2, 0], 0.6)  # same row, IoU 46/50
    far = _row(RECT + [0, 100], 0.8)
    assert quad_iou(a, b) == pytest.approx(46 * 24 / (50 * 24), rel=1e-6)
    out = nms_locality(np.stack([a, b, far]), thresh=0.2)
    assert len(out) == 2
    merged = out[np.argmax(out[:, 8])]
    assert merged[8] == pytest.approx(1.5)
    np.testing.assert_allclose(merged[:8].reshape(4, 2), RECT + [2 * 0.6 / 1.5, 0], rtol=1e-6)
    np.testing.assert_allclose(out[np.argmin(out[:, 8])], far)


def _synthetic_maps(quads: list[np.ndarray], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    score = np.zeros((1, 1, h, w), np.float32)
    geo = np.zeros((1, 8, h, w), np.float32)
    for q in quads:
        x0, y0 = q.min(axis=0) / 4
        x1, y1 = q.max(axis=0) / 4
        ys, xs = np.mgrid[int(y0) + 1:int(y1), int(x0) + 1:int(x1)]
        score[0, 0, ys, xs] = 0.95
        for k in range(4):
            geo[0, 2 * k, ys, xs] = 4 * xs - q[k, 0]
            geo[0, 2 * k + 1, ys, xs] = 4 * ys - q[k, 1]
    return score, geo


def test_postprocess_recovers_rectangles() -> None:
    q1 = np.array([[16, 20], [112, 20], [112, 52], [16, 52]], np.float32)
    q2 = np.array([[40, 96], [200, 96], [200, 140], [40, 140]], np.float32)
    score, geo = _synthetic_maps([q1, q2], 48, 64)
    post = EASTPostProcess(score_thresh=0.8, cover_thresh=0.1, nms_thresh=0.2)
    shape = np.array([[192, 256, 1.0, 1.0]], np.float32)
    res = post({"f_score": score, "f_geo": geo}, shape)[0]
    got = sorted(res["points"].tolist(), key=lambda p: p[0][1])
    assert got == [q1.astype(int).tolist(), q2.astype(int).tolist()]
    assert np.all(res["scores"] > 0.5)  # mean score inside each quad (its border pixels are 0)
    # the export form [B, 9, h, w] and a resize ratio of 0.5 give the same quads at source scale
    res2 = post(np.concatenate([score, geo], axis=1), np.array([[384, 512, 0.5, 0.5]], np.float32))[0]
    assert sorted(res2["points"].tolist(), key=lambda p: p[0][1]) == [(q1 * 2).astype(int).tolist(),
                                                                      (q2 * 2).astype(int).tolist()]
    assert len(post({"f_score": score * 0, "f_geo": geo}, shape)[0]["points"]) == 0


def _scenes(n: int = 12, size: tuple[int, int] = (300, 200)) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rendered sign scenes: (BGR image, quads [N,4,2] clockwise from top-left, don't-care tags)."""
    out = []
    for i in range(n):
        img, boxes = render_det_sample(np.random.default_rng([5, i]), "sign", size)
        quads = np.array([q for q, _, _ in boxes], np.float32).reshape(-1, 4, 2)
        out.append((img, quads, np.array([dc for _, _, dc in boxes], bool)))
    return out


def _vertex_errors(found: np.ndarray, quads: np.ndarray, tags: np.ndarray) -> list[float]:
    """Per cared-for quad of at least 8 px: max vertex distance (px) to the closest detection."""
    errs = []
    for quad, tag in zip(quads, tags):
        short = min(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[0] - quad[1]))
        if not tag and short >= 8:
            errs.append(min((float(np.abs(f - quad).max()) for f in found), default=np.inf))
    return errs


def test_round_trip_training_targets_decode_to_the_ground_truth() -> None:
    """The stride-4 ``score_map``/``geo_map`` that EASTProcessTrain trains on, fed back as the
    head's output, decode to the ground truth at source scale: hmean 1.0, every vertex within 1 px
    (the int cast of the decoded quad, as PaddleOCR's). 12 scenes, 48 quads; the longer side is
    resized 300 -> 256, then padded to a square."""
    op = EASTProcessTrain(image_shape=[256, 256], min_text_size=1)
    post, metric, errs = EASTPostProcess(), DetMetric(), []
    for img, quads, tags in _scenes():
        h, w = img.shape[:2]
        polys, kept = op.check_and_validate_polys(quads, tags, h, w)
        image, score, geo, _ = op.make_targets(img, polys, kept)
        assert image.shape == (3, 256, 256) and score.shape == (1, 64, 64) and geo.shape == (9, 64, 64)
        ratio = 256 / max(h, w)
        result = post({"f_score": score[None], "f_geo": geo[None, :8]}, np.array([[h, w, ratio, ratio]]))
        metric(result, [None, None, [quads], [tags]])
        errs += _vertex_errors(result[0]["points"], quads, tags)
    assert metric.get_metric()["hmean"] == pytest.approx(1.0)
    assert len(errs) > 20 and max(errs) <= 1.0


def test_round_trip_through_the_eval_resize() -> None:
    """Targets built at DetResizeForTest's size (300x200 -> 256x160: ratio_w 0.853, ratio_h 0.8) in
    the export form ``[B, 9, h, w]`` decode back to source scale through ``shape_list``: hmean 1.0,
    every vertex of the 35 cared-for quads of 8 px or more within 1 px."""
    resize = DetResizeForTest(limit_side_len=256, limit_type="max")
    post, metric, errs = EASTPostProcess(), DetMetric(), []
    for img, quads, tags in _scenes():
        data = resize({"image": img})
        shape = data["shape"]
        rh, rw = data["image"].shape[:2]
        assert (rh, rw) == (160, 256) and shape[2] != shape[3]
        score, geo, _ = generate_quad((rh, rw), quads * shape[[3, 2]], tags, min_text_size=1)
        maps = np.concatenate([score[None, None, ::4, ::4], geo.transpose(2, 0, 1)[None, :8, ::4, ::4]], axis=1)
        result = post(maps.astype(np.float32), shape[None])
        metric(result, [None, None, [quads], [tags]])
        errs += _vertex_errors(result[0]["points"], quads, tags)
    assert metric.get_metric()["hmean"] == pytest.approx(1.0)
    assert len(errs) > 20 and max(errs) <= 1.0


# --- the bulk NMS and post-process against a plain per-pixel scan (PaddleOCR's algorithm written
# out with shapely, one quad at a time; quads count as their convex hulls, as ours do) ---


def _hull_iou(g: np.ndarray, p: np.ndarray) -> float:
    a, b = (MultiPoint(q[:8].reshape(4, 2)).convex_hull for q in (g, p))
    if a.area <= 0 or b.area <= 0:
        return 0.0
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _scan_nms(polys: np.ndarray, thresh: float) -> np.ndarray:
    runs, cur = [], None
    for g in polys:
        if cur is not None and _hull_iou(g, cur) > thresh:
            merged = g.copy()
            merged[:8] = (g[8] * g[:8] + cur[8] * cur[:8]) / (g[8] + cur[8])
            merged[8] = g[8] + cur[8]
            cur = merged
        else:
            if cur is not None:
                runs.append(cur)
            cur = g
    if cur is not None:
        runs.append(cur)
    if not runs:
        return np.zeros((0, 9))
    boxes = np.array(runs)
    order, keep = list(np.argsort(boxes[:, 8])[::-1]), []
    while order:
        best, order = order[0], order[1:]
        keep.append(best)
        order = [t for t in order if _hull_iou(boxes[best], boxes[t]) <= thresh]
    return boxes[keep]


def _scan_postprocess(score: np.ndarray, geo: np.ndarray, shape: np.ndarray) -> tuple[list, list]:
    """One image, defaults (score 0.8, cover 0.1, nms 0.2): points (clipped to the image) and scores."""
    proposals = []
    for y in range(score.shape[0]):
        for x in range(score.shape[1]):
            if score[y, x] > 0.8:
                quad = np.float32([4 * x, 4 * y] * 4 - geo[:, y, x])  # float32, as PaddleOCR holds them
                proposals.append(np.r_[quad.astype(np.float64), score[y, x]])
    points, scores = [], []
    for box in _scan_nms(np.array(proposals).reshape(-1, 9), 0.2):
        mask = np.zeros(score.shape, np.uint8)
        cv2.fillPoly(mask, [box[:8].reshape(4, 2).astype(np.int32) // 4], 1)
        cover = cv2.mean(score, mask)[0]
        if cover <= 0.1:
            continue
        quad = box[:8].reshape(4, 2) / shape[[3, 2]]
        quad = np.clip(quad, 0, shape[[1, 0]] - 1).astype(np.int32)
        first = int(np.argmin(quad.sum(axis=1)))
        quad = quad[[(first + k) % 4 for k in range(4)]]
        if abs(quad[0, 0] - quad[1, 0]) <= abs(quad[0, 1] - quad[1, 1]):
            quad = quad[[0, 3, 2, 1]]
        if np.linalg.norm(quad[0] - quad[1]) >= 5 and np.linalg.norm(quad[3] - quad[0]) >= 5:
            points.append(quad.tolist())
            scores.append(cover)
    return points, scores


def _noisy_east_maps(seed: int, h: int = 64, w: int = 96, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Tilted words on lines (stride-4 maps): core scores 0.8-1.0, geometry = the word's quad plus
    Gaussian noise; background specks above the threshold carry random (often non-convex) quads."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 0.5, (h, w)).astype(np.float32)
    geo = rng.normal(0, 12, (8, h, w)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(9):
        cx, cy = rng.uniform(60, 4 * w - 60), rng.uniform(24, 4 * h - 24)
        half = np.array([rng.uniform(20, 55), rng.uniform(7, 18)])
        a = rng.uniform(-0.15, 0.15)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        quad = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ rot.T + [cx, cy]
        u = (np.stack([4 * xs - cx, 4 * ys - cy], -1) @ rot) / half  # word frame, -1..1 inside
        core = (np.abs(u[..., 0]) < 1 - 0.6 * half[1] / half[0]) & (np.abs(u[..., 1]) < 0.4)
        score[core] = rng.uniform(0.8, 1.0, core.sum())
        for k in range(4):
            geo[2 * k][core] = 4 * xs[core] - quad[k, 0] + rng.normal(0, noise, core.sum())
            geo[2 * k + 1][core] = 4 * ys[core] - quad[k, 1] + rng.normal(0, noise, core.sum())
    specks = rng.integers(0, [h, w], (12, 2))
    score[specks[:, 0], specks[:, 1]] = 0.85
    return score, geo


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocess_equals_the_per_pixel_scan(seed: int) -> None:
    """Overlapping words, noisy geometry and junk specks: the same points, bit for bit, and scores."""
    score, geo = _noisy_east_maps(seed)
    shape = np.array([230.0, 300.0, 0.9, 1.05])  # a resize ratio per side, and clipping at the border
    want_points, want_scores = _scan_postprocess(score, geo, shape)
    got = EASTPostProcess()({"f_score": score[None, None], "f_geo": geo[None]}, shape[None])[0]
    assert len(want_points) >= 5
    assert got["points"].tolist() == want_points
    np.testing.assert_allclose(got["scores"], want_scores, rtol=1e-6)


@pytest.mark.parametrize("thresh", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("noise", [0.0, 1.0, 8.0])
def test_bulk_nms_equals_the_sequential_scan(noise: float, thresh: float) -> None:
    """Runs of similar quads in scan order; noise 8 px makes many bulk guesses wrong (repairs), and
    noise 0 on integer corners gives exact ties; every tenth quad of that set is a bowtie."""
    rng = np.random.default_rng([int(noise), int(thresh * 10)])
    rows = []
    while len(rows) < 300:
        rot = rng.uniform(-0.3, 0.3)
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) * rng.uniform(3, 50, 2)
        quad = corners @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]]) + rng.uniform(0, 150, 2)
        for _ in range(int(rng.integers(1, 25))):
            q = quad + rng.normal(0, noise, (4, 2))
            if noise == 0:
                q = np.round(q)[[0, 2, 1, 3] if len(rows) % 10 == 0 else [0, 1, 2, 3]]
            rows.append(np.r_[q.ravel(), rng.uniform(0.8, 1.0)])
    polys = np.array(rows).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(nms_locality(polys, thresh), _scan_nms(polys, thresh))


def test_quad_iou_matches_shapely() -> None:
    rng = np.random.default_rng(4)
    pairs = rng.uniform(0, 40, (200, 2, 8))
    pairs[:100, 1] = pairs[:100, 0] + rng.normal(0, 3, (100, 8))  # mostly overlapping, some concave
    got = [quad_iou(a, b) for a, b in pairs]
    want = [_hull_iou(a, b) for a, b in pairs]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert sum(w > 0 for w in want) > 100
