"""EAST training targets (PaddleOCR ``ppocr/data/imaug/east_process.py``: ``EASTProcessTrain``).

Per sample: random 90/180/270-degree rotation (p=``rotate_ratio``, 0.5 as in PaddleOCR), polygon validation (clockwise order,
degenerate quads dropped), random rescale by one of ``random_scale``, a random crop that cuts no
text (a background-only crop with probability ``background_ratio``), resize of the longer side to
``image_shape[1]`` with ImageNet normalisation and zero padding to a square, then the targets at
stride 4:

* ``score_map`` [1,h,w]: 1 inside each quad shrunk by 0.3 x its shortest adjacent edge per vertex;
* ``geo_map`` [9,h,w]: for those pixels, ``pixel - vertex_k`` (x, y) for the 4 vertices, and
  ``1 / max(min(poly_h, poly_w), 1)`` in channel 8;
* ``training_mask`` [1,h,w]: 0 over ignored (``###``) quads and quads shorter than
  ``min_text_size``.

``image`` comes out normalised CHW float32 (no ``NormalizeImage``/``ToCHWImage`` after it).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from ocr_core.data import TRANSFORMS

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SHRINK_R = 0.3


def polygon_area(poly: np.ndarray) -> float:
    """Paddle's signed area: negative for clockwise quads in image coordinates (y down)."""
    edge = [(poly[(i + 1) % 4][0] - poly[i][0]) * (poly[(i + 1) % 4][1] + poly[i][1]) for i in range(4)]
    return float(np.sum(edge) / 2.0)


def shrink_quad(poly: np.ndarray, r: list[float]) -> np.ndarray:
    """Move each vertex inwards by ``0.3 * r[i]`` along both adjacent edges, longer pair first."""
    poly = poly.astype(np.float64).copy()

    def along(a: int, b: int) -> None:  # move a towards b and b towards a along edge a-b
        theta = math.atan2(poly[b][1] - poly[a][1], poly[b][0] - poly[a][0])
        poly[a] += SHRINK_R * r[a] * np.array([math.cos(theta), math.sin(theta)])
        poly[b] -= SHRINK_R * r[b] * np.array([math.cos(theta), math.sin(theta)])

    long_first = (np.linalg.norm(poly[0] - poly[1]) + np.linalg.norm(poly[2] - poly[3])
                  > np.linalg.norm(poly[0] - poly[3]) + np.linalg.norm(poly[1] - poly[2]))
    horizontal = [(0, 1), (3, 2)]
    vertical = [(0, 3), (1, 2)]
    for a, b in (horizontal + vertical) if long_first else (vertical + horizontal):
        along(a, b)
    return poly


def generate_quad(size: tuple[int, int], polys: np.ndarray, tags: np.ndarray,
                  min_text_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution ``(score_map uint8 [h,w], geo_map float32 [h,w,9], training_mask uint8 [h,w])``."""
    h, w = size
    poly_mask = np.zeros((h, w), np.int32)
    score_map = np.zeros((h, w), np.uint8)
    geo_map = np.zeros((h, w, 9), np.float32)
    training_mask = np.ones((h, w), np.uint8)
    for idx, (poly, tag) in enumerate(zip(polys, tags)):
        poly = np.asarray(poly, np.float64).copy()
        r = [float(min(np.linalg.norm(poly[i] - poly[(i + 1) % 4]),
                       np.linalg.norm(poly[i] - poly[(i - 1) % 4]))) for i in range(4)]
        shrunk = [shrink_quad(poly, r).astype(np.int32)]
        cv2.fillPoly(score_map, shrunk, 1)
        cv2.fillPoly(poly_mask, shrunk, idx + 1)
        poly_h = float(min(np.linalg.norm(poly[0] - poly[3]), np.linalg.norm(poly[1] - poly[2])))
        poly_w = float(min(np.linalg.norm(poly[0] - poly[1]), np.linalg.norm(poly[2] - poly[3])))
        if min(poly_h, poly_w) < min_text_size or tag:
            cv2.fillPoly(training_mask, [poly.astype(np.int32)], 0)
        ys, xs = np.nonzero(poly_mask == idx + 1)
        poly[:, 0] = np.clip(poly[:, 0], 0, w)
        poly[:, 1] = np.clip(poly[:, 1], 0, h)
        for k in range(4):
            geo_map[ys, xs, 2 * k] = xs - poly[k, 0]
            geo_map[ys, xs, 2 * k + 1] = ys - poly[k, 1]
        geo_map[ys, xs, 8] = 1.0 / max(min(poly_h, poly_w), 1.0)
    return score_map, geo_map, training_mask


@TRANSFORMS.register()
class EASTProcessTrain:
    """EAST target maker (PaddleOCR's keys).

    Args:
        image_shape: ``[H, W]``; the square input side is ``image_shape[1]``.
        background_ratio: Probability of a text-free crop.
        min_crop_side_ratio: Minimum crop side as a share of the image side.
        min_text_size: Quads with a shorter side are masked out of the loss.
        rotate_ratio: Probability of the random 90/180/270-degree rotation. Not a PaddleOCR key
            (Paddle hard-codes 0.5, the default): the quad geometry keeps the vertex order, so a
            rotated sample asks for a different vertex at each corner, which a short run on
            upright text cannot afford (0 in the CI-sized run of ``tests/integration/test_byo.py``).
    """

    def __init__(self, image_shape: list[int] | None = None, background_ratio: float = 0.125,
                 min_crop_side_ratio: float = 0.1, min_text_size: int = 10, rotate_ratio: float = 0.5) -> None:
        self.input_size = int((image_shape or [512, 512])[1])
        self.random_scale = np.array([0.5, 1, 2.0, 3.0])
        self.background_ratio = background_ratio
        self.min_crop_side_ratio = min_crop_side_ratio
        self.min_text_size = min_text_size
        self.rotate_ratio = rotate_ratio

    def preprocess(self, im: np.ndarray) -> tuple[np.ndarray, float]:
        """Longer side -> input_size, /255, ImageNet mean/std, zero-pad to a square; CHW float32."""
        s = self.input_size
        scale = float(s) / float(max(im.shape[:2]))
        im = cv2.resize(im, None, fx=scale, fy=scale)
        im = (im.astype(np.float32) / 255.0 - MEAN) / STD
        padded = np.zeros((s, s, 3), np.float32)
        padded[: im.shape[0], : im.shape[1]] = im[:s, :s]
        return padded.transpose(2, 0, 1), scale

    @staticmethod
    def rotate_im_poly(im: np.ndarray, polys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rotate by ``k`` x 90 degrees counter-clockwise (np.rot90) with the polygons."""
        h, w = im.shape[:2]
        out = np.ascontiguousarray(np.rot90(im, k))
        angle = -90 * k * math.pi / 180.0
        cx, cy, ncx, ncy = 0.5 * w, 0.5 * h, 0.5 * out.shape[1], 0.5 * out.shape[0]
        dx, dy = polys[..., 0] - cx, polys[..., 1] - cy
        rx = math.cos(angle) * dx - math.sin(angle) * dy + ncx
        ry = math.sin(angle) * dx + math.cos(angle) * dy + ncy
        return out, np.stack([rx, ry], axis=-1).astype(np.float32)

    @staticmethod
    def check_and_validate_polys(polys: np.ndarray, tags: np.ndarray, h: int, w: int
                                 ) -> tuple[np.ndarray, np.ndarray]:
        """Clip to the image, drop degenerate quads, make every quad clockwise (reversed -> ignored)."""
        if polys.shape[0] == 0:
            return polys, tags
        polys = polys.copy()
        polys[:, :, 0] = np.clip(polys[:, :, 0], 0, w - 1)
        polys[:, :, 1] = np.clip(polys[:, :, 1], 0, h - 1)
        keep_p, keep_t = [], []
        for poly, tag in zip(polys, tags):
            area = polygon_area(poly)
            if abs(area) < 1:
                continue
            if area > 0:
                tag, poly = True, poly[(0, 3, 2, 1), :]
            keep_p.append(poly)
            keep_t.append(bool(tag))
        return np.array(keep_p, np.float32).reshape(-1, 4, 2), np.array(keep_t, bool)

    def crop_area(self, im: np.ndarray, polys: np.ndarray, tags: np.ndarray, crop_background: bool,
                  max_tries: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A random crop that cuts no text (PaddleOCR's ``crop_area``)."""
        h, w = im.shape[:2]
        pad_h, pad_w = h // 10, w // 10
        h_array = np.zeros(h + pad_h * 2, np.int32)
        w_array = np.zeros(w + pad_w * 2, np.int32)
        for poly in np.round(polys).astype(np.int32):
            w_array[poly[:, 0].min() + pad_w: poly[:, 0].max() + pad_w] = 1
            h_array[poly[:, 1].min() + pad_h: poly[:, 1].max() + pad_h] = 1
        h_axis, w_axis = np.where(h_array == 0)[0], np.where(w_array == 0)[0]
        if len(h_axis) == 0 or len(w_axis) == 0:
            return im, polys, tags
        for _ in range(max_tries):
            xx, yy = np.random.choice(w_axis, size=2), np.random.choice(h_axis, size=2)
            xmin, xmax = np.clip([xx.min() - pad_w, xx.max() - pad_w], 0, w - 1)
            ymin, ymax = np.clip([yy.min() - pad_h, yy.max() - pad_h], 0, h - 1)
            if xmax - xmin < self.min_crop_side_ratio * w or ymax - ymin < self.min_crop_side_ratio * h:
                continue
            if polys.shape[0]:
                inside = ((polys[:, :, 0] >= xmin) & (polys[:, :, 0] <= xmax)
                          & (polys[:, :, 1] >= ymin) & (polys[:, :, 1] <= ymax))
                selected = np.where(inside.sum(axis=1) == 4)[0]
            else:
                selected = np.array([], np.int64)
            if len(selected) == 0:
                if crop_background:
                    return im[ymin:ymax + 1, xmin:xmax + 1], polys[:0], tags[:0]
                continue
            polys = polys[selected].copy()
            polys[:, :, 0] -= xmin
            polys[:, :, 1] -= ymin
            return im[ymin:ymax + 1, xmin:xmax + 1], polys, tags[selected]
        return im, polys, tags

    def make_targets(self, im: np.ndarray, polys: np.ndarray, tags: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Preprocess ``im`` and build the stride-4 targets for ``polys`` (already cropped)."""
        image, ratio = self.preprocess(im)
        polys = polys.astype(np.float32) * ratio
        s = self.input_size
        if polys.shape[0]:
            score, geo, mask = generate_quad((s, s), polys, tags, self.min_text_size)
        else:
            score, geo, mask = np.zeros((s, s), np.uint8), np.zeros((s, s, 9), np.float32), np.ones((s, s), np.uint8)
        return (image, score[None, ::4, ::4].astype(np.float32),
                np.ascontiguousarray(geo.transpose(2, 0, 1)[:, ::4, ::4]),
                mask[None, ::4, ::4].astype(np.float32))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        im, polys, tags = data.get("image"), data.get("polys"), data.get("ignore_tags")
        if im is None or polys is None or len(polys) == 0:
            return None
        polys = np.asarray(polys, np.float32).reshape(-1, 4, 2)
        tags = np.asarray(tags if tags is not None else np.zeros(len(polys)), bool)
        if np.random.rand() < self.rotate_ratio:
            u = np.random.rand()
            im, polys = self.rotate_im_poly(im, polys, 1 if u <= 0.333 else 2 if u <= 0.666 else 3)
        polys, tags = self.check_and_validate_polys(polys, tags, im.shape[0], im.shape[1])
        if polys.shape[0] == 0:
            return None
        scale = float(np.random.choice(self.random_scale))
        im = cv2.resize(im, None, fx=scale, fy=scale)
        polys = polys * scale
        if np.random.rand() < self.background_ratio:
            im, polys, tags = self.crop_area(im, polys, tags, crop_background=True)
            if len(polys) > 0:
                return None
        else:
            im, polys, tags = self.crop_area(im, polys, tags, crop_background=False)
            if polys.shape[0] == 0 or tags.all():
                return None
        image, score, geo, mask = self.make_targets(im, polys, tags)
        data.update(image=image, score_map=score, geo_map=geo, training_mask=mask)
        return data
