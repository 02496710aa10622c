"""Recognition augmentation: PaddleOCR ``RecAug`` (TIA warps + BaseDataAugmentation) and
``RecConAug`` (horizontal concatenation of samples).

Randomness comes from Python's ``random`` (probabilities, crop, hsv, jitter) and NumPy's global
generator (TIA control points), as in PaddleOCR, so seeding both makes the ops reproducible.
albumentations ops, which own their generators, are re-seeded from ``random`` on every call.

TIA ("Text Image Augmentation", Luo et al. 2020) moves control points on the top and bottom
image borders and warps the image with a moving-least-squares similarity deformation; here the
deformation is evaluated per pixel with NumPy and applied with ``cv2.remap``.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import albumentations as A
import cv2
import numpy as np

from ocr_core.data import TRANSFORMS

# --------------------------------------------------------------------------------------------
# TIA warps
# --------------------------------------------------------------------------------------------

_MLS_GRID = 8  # px between the nodes where the deformation is evaluated exactly


def _mls_similarity_map(v: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """MLS similarity deformation (Schaefer et al. 2006, weights 1/|p - v|^2) taking the
    points ``p`` onto ``q``, evaluated at the points ``v`` ([N, 2] -> [N, 2])."""
    d2 = ((v[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    wgt = 1.0 / (d2 + 1e-8)  # a node on a control point gets (almost) all the weight
    wsum = wgt.sum(1, keepdims=True)
    p_star = wgt @ p / wsum
    q_star = wgt @ q / wsum
    p_hat = p[None] - p_star[:, None]
    q_hat = q[None] - q_star[:, None]
    dv = v - p_star
    s = p_hat[..., 0] * dv[:, None, 0] + p_hat[..., 1] * dv[:, None, 1]
    t = p_hat[..., 0] * dv[:, None, 1] - p_hat[..., 1] * dv[:, None, 0]
    mu = (wgt * (p_hat**2).sum(-1)).sum(1)
    mu = np.where(mu > 1e-12, mu, 1.0)
    fx = (wgt * (q_hat[..., 0] * s - q_hat[..., 1] * t)).sum(1) / mu
    fy = (wgt * (q_hat[..., 0] * t + q_hat[..., 1] * s)).sum(1) / mu
    return np.stack([fx, fy], axis=1) + q_star


def _interp_matrix(n: int, nodes: np.ndarray) -> np.ndarray:
    """[n, len(nodes)] matrix linearly interpolating node values at pixels 0..n-1."""
    x = np.arange(n, dtype=np.float64)
    j = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    frac = (x - nodes[j]) / (nodes[j + 1] - nodes[j])
    m = np.zeros((n, len(nodes)))
    m[np.arange(n), j] = 1.0 - frac
    m[np.arange(n), j + 1] = frac
    return m


def _grid_nodes(n: int) -> np.ndarray:
    nodes = np.arange(0, n, _MLS_GRID, dtype=np.float64)
    return nodes if nodes[-1] == n - 1 else np.append(nodes, n - 1)


def mls_similarity_warp(img: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Warp ``img`` so that ``src_pts`` move to ``dst_pts`` (same output size).

    Each output pixel samples the source at the MLS similarity deformation that maps the
    destination points onto the source points. Like PaddleOCR's WarpMLS, the deformation is
    computed on a node grid and interpolated bilinearly in between (8 px here, 100 px there);
    samples outside the source clamp to its border.
    """
    h, w = img.shape[:2]
    if h < 2 or w < 2:
        return img
    ny, nx = _grid_nodes(h), _grid_nodes(w)
    gy, gx = np.meshgrid(ny, nx, indexing="ij")
    nodes = np.stack([gx.ravel(), gy.ravel()], axis=1)
    mapped = _mls_similarity_map(
        nodes, np.asarray(dst_pts, dtype=np.float64), np.asarray(src_pts, dtype=np.float64)
    )
    ry, rx = _interp_matrix(h, ny), _interp_matrix(w, nx)
    map_x = (ry @ mapped[:, 0].reshape(len(ny), len(nx)) @ rx.T).astype(np.float32)
    map_y = (ry @ mapped[:, 1].reshape(len(ny), len(nx)) @ rx.T).astype(np.float32)
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _corners(w: int, h: int) -> list[list[float]]:
    return [[0, 0], [w, 0], [w, h], [0, h]]


def tia_distort(img: np.ndarray, segment: int = 4) -> np.ndarray:
    """Jitter the corners inwards and the top/bottom points of ``segment - 1`` cut lines."""
    h, w = img.shape[:2]
    cut = w // segment
    thresh = cut // 3
    if thresh < 1 or h < 2:
        return img
    rnd = np.random.randint
    src = _corners(w, h)
    dst = [
        [rnd(thresh), rnd(thresh)],
        [w - rnd(thresh), rnd(thresh)],
        [w - rnd(thresh), h - rnd(thresh)],
        [rnd(thresh), h - rnd(thresh)],
    ]
    half = thresh * 0.5
    for k in range(1, segment):
        src += [[cut * k, 0], [cut * k, h]]
        dst.append([cut * k + rnd(thresh) - half, rnd(thresh) - half])
        dst.append([cut * k + rnd(thresh) - half, h + rnd(thresh) - half])
    return mls_similarity_warp(img, np.array(src), np.array(dst))


def tia_stretch(img: np.ndarray, segment: int = 4) -> np.ndarray:
    """Shift each of ``segment - 1`` vertical cut lines sideways (local stretch/squeeze)."""
    h, w = img.shape[:2]
    cut = w // segment
    thresh = cut * 4 // 5
    if thresh < 1 or h < 2:
        return img
    src = _corners(w, h)
    dst = _corners(w, h)
    half = thresh * 0.5
    for k in range(1, segment):
        move = np.random.randint(thresh) - half
        src += [[cut * k, 0], [cut * k, h]]
        dst += [[cut * k + move, 0], [cut * k + move, h]]
    return mls_similarity_warp(img, np.array(src), np.array(dst))


def tia_perspective(img: np.ndarray) -> np.ndarray:
    """Move the four corners vertically by up to h/2 (a perspective-like tilt)."""
    h, w = img.shape[:2]
    thresh = h // 2
    if thresh < 1:
        return img
    rnd = np.random.randint
    dst = [[0, rnd(thresh)], [w, rnd(thresh)], [w, h - rnd(thresh)], [0, h - rnd(thresh)]]
    return mls_similarity_warp(img, np.array(_corners(w, h)), np.array(dst))


# --------------------------------------------------------------------------------------------
# Photometric / small geometric ops of BaseDataAugmentation
# --------------------------------------------------------------------------------------------

# 5x5 Gaussian, sigma 1 (PaddleOCR: cv2.GaussianBlur(img, (5, 5), 1)).
_BLUR = A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.0, 1.0), p=1.0)
# PaddleOCR adds 0.5 * N(0, sqrt(0.1)) to the 0-255 image; albumentations takes std / 255.
_NOISE = A.GaussNoise(std_range=(0.5 * 0.1**0.5 / 255.0,) * 2, mean_range=(0.0, 0.0), p=1.0)
_INVERT = A.InvertImg(p=1.0)


def _apply(op: A.BasicTransform, img: np.ndarray) -> np.ndarray:
    op.set_random_seed(random.getrandbits(32))
    return op(image=img)["image"]


def get_crop(img: np.ndarray) -> np.ndarray:
    """Cut 1-8 rows off the top or the bottom."""
    h = img.shape[0]
    n = min(random.randint(1, 8), h - 1)
    return img[n:h].copy() if random.randint(0, 1) else img[: h - n].copy()


def blur(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return _apply(_BLUR, img) if h > 10 and w > 10 else img


def hsv_aug(img: np.ndarray) -> np.ndarray:
    """Scale V by (1 + delta), |delta| <= 0.001 (PaddleOCR's, nearly a no-op by design).

    Multiplicative, so albumentations' additive HueSaturationValue is not the same op.
    """
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    sign = 1 if random.random() > 0.5000001 else -1
    delta = 0.001 * random.random() * sign
    hsv[:, :, 2] = (hsv[:, :, 2] * (1 + delta)).astype(hsv.dtype)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def jitter(img: np.ndarray) -> np.ndarray:
    """Smear the image diagonally by up to 1% of its smaller side (not a colour jitter)."""
    h, w = img.shape[:2]
    if h <= 10 or w <= 10:
        return img
    s = int(random.random() * min(h, w) * 0.01)
    src = img.copy()
    out = img.copy()
    for i in range(s):
        out[i:, i:] = src[: h - i, : w - i]
    return out


def add_gauss_noise(img: np.ndarray) -> np.ndarray:
    return _apply(_NOISE, img)


def invert(img: np.ndarray) -> np.ndarray:
    return _apply(_INVERT, img)


@TRANSFORMS.register()
class BaseDataAugmentation:
    """Each op applied independently with its probability: crop (h, w >= 20), blur, hsv,
    jitter, noise, inversion (255 - img), in that order."""

    def __init__(
        self,
        crop_prob: float = 0.4,
        reverse_prob: float = 0.4,
        noise_prob: float = 0.4,
        jitter_prob: float = 0.4,
        blur_prob: float = 0.4,
        hsv_aug_prob: float = 0.4,
    ) -> None:
        self.crop_prob = crop_prob
        self.reverse_prob = reverse_prob
        self.noise_prob = noise_prob
        self.jitter_prob = jitter_prob
        self.blur_prob = blur_prob
        self.hsv_aug_prob = hsv_aug_prob

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        img = data["image"]
        h, w = img.shape[:2]
        if random.random() <= self.crop_prob and h >= 20 and w >= 20:
            img = get_crop(img)
        if random.random() <= self.blur_prob:
            img = blur(img)
        if random.random() <= self.hsv_aug_prob:
            img = hsv_aug(img)
        if random.random() <= self.jitter_prob:
            img = jitter(img)
        if random.random() <= self.noise_prob:
            img = add_gauss_noise(img)
        if random.random() <= self.reverse_prob:
            img = invert(img)
        data["image"] = img
        return data


@TRANSFORMS.register()
class RecAug:
    """PaddleOCR's default recognition augmentation.

    With ``tia_prob``: TIA distort and stretch (3-6 segments, only if h, w >= 20), then TIA
    perspective (any size, as in PaddleOCR's code). Then :class:`BaseDataAugmentation`.
    Expects an HWC uint8 BGR image.
    """

    def __init__(
        self,
        tia_prob: float = 0.4,
        crop_prob: float = 0.4,
        reverse_prob: float = 0.4,
        noise_prob: float = 0.4,
        jitter_prob: float = 0.4,
        blur_prob: float = 0.4,
        hsv_aug_prob: float = 0.4,
    ) -> None:
        self.tia_prob = tia_prob
        self.bda = BaseDataAugmentation(
            crop_prob, reverse_prob, noise_prob, jitter_prob, blur_prob, hsv_aug_prob
        )

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        img = data["image"]
        h, w = img.shape[:2]
        if random.random() <= self.tia_prob:
            if h >= 20 and w >= 20:
                img = tia_distort(img, random.randint(3, 6))
                img = tia_stretch(img, random.randint(3, 6))
            img = tia_perspective(img)
        data["image"] = img
        return self.bda(data)


@TRANSFORMS.register()
class RecConAug:
    """Concatenate extra samples to the right of the image, joining the labels.

    Applied with probability ``prob``. The dataset supplies ``ext_data_num`` decoded samples in
    ``data["ext_data"]`` (dicts with ``image`` and raw-string ``label``). Each is appended in
    turn unless the joined label would exceed ``max_text_length`` characters or the summed
    width/height ratios would exceed ``W / H`` of ``image_shape``; the first refusal stops.
    Both parts are resized to height ``H`` keeping their aspect ratio. ``ext_data`` is removed.

    Args:
        prob: Probability of trying to concatenate.
        image_shape: ``[H, W, C]`` target shape; default ``[32, 320, 3]``.
        max_text_length: Limit on the joined label length.
        ext_data_num: How many extra samples the dataset should supply.
    """

    def __init__(
        self,
        prob: float = 0.5,
        image_shape: Optional[list[int]] = None,
        max_text_length: int = 25,
        ext_data_num: int = 1,
    ) -> None:
        self.prob = prob
        self.image_shape = list(image_shape) if image_shape is not None else [32, 320, 3]
        self.max_text_length = max_text_length
        self.ext_data_num = ext_data_num
        self.max_wh_ratio = self.image_shape[1] / self.image_shape[0]

    def _resize_to_height(self, img: np.ndarray) -> np.ndarray:
        target_h = self.image_shape[0]
        new_w = round(img.shape[1] / img.shape[0] * target_h)
        return cv2.resize(img, (new_w, target_h))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        ext_list = data.pop("ext_data", None) or []
        if random.random() > self.prob:
            return data
        for ext in ext_list:
            if len(data["label"]) + len(ext["label"]) > self.max_text_length:
                break
            img, ext_img = data["image"], ext["image"]
            ratio = img.shape[1] / img.shape[0] + ext_img.shape[1] / ext_img.shape[0]
            if ratio > self.max_wh_ratio:
                break
            data["image"] = np.concatenate(
                [self._resize_to_height(img), self._resize_to_height(ext_img)], axis=1
            )
            data["label"] = data["label"] + ext["label"]
        return data


__all__ = [
    "BaseDataAugmentation",
    "RecAug",
    "RecConAug",
    "mls_similarity_warp",
    "tia_distort",
    "tia_perspective",
    "tia_stretch",
]
