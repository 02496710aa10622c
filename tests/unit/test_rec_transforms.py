"""Recognition resize/normalise, RecAug and RecConAug."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from ocr_core.data import TRANSFORMS
from ocr_core.data.transforms.rec_augment import (
    RecAug,
    RecConAug,
    mls_similarity_warp,
    tia_distort,
    tia_perspective,
    tia_stretch,
)
from ocr_core.data.transforms.rec_resize import RecResizeImg, resize_norm_img
from ocr_core.errors import ConfigError
from ocr_core.registry import check_kwargs


def _bgr(h: int, w: int, bgr=(0, 128, 255)) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bgr
    return img


def _pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return cv2.resize(rng.randint(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8), (w, h))


# ----------------------------------------------------------------------------- RecResizeImg


@pytest.mark.parametrize(
    ("shape", "hw", "resized_w"),
    [
        ([3, 48, 320], (32, 64), 96),  # 48 * 64 / 32 = 96
        ([3, 48, 320], (7, 10), 69),  # ceil(48 * 10 / 7 = 68.57)
        ([3, 48, 320], (30, 50), 80),  # exactly 80, no rounding up
        ([3, 48, 320], (20, 400), 320),  # capped at W
        ([3, 32, 100], (20, 30), 48),  # 32 * 30 / 20
        ([3, 32, 100], (32, 200), 100),
    ],
)
def test_resize_norm_img_shapes_padding_ratio(shape, hw, resized_w) -> None:
    out, valid_ratio = resize_norm_img(_bgr(*hw), shape)
    c, h, w = shape
    assert out.shape == (c, h, w) and out.dtype == np.float32
    assert valid_ratio == pytest.approx(min(1.0, resized_w / w))
    assert not out[:, :, resized_w:].any()  # right zero-padding
    # BGR kept in order; (x / 255 - 0.5) / 0.5 of a flat image survives the resize exactly
    assert np.allclose(out[0, :, :resized_w], -1.0)
    assert np.allclose(out[1, :, :resized_w], (128 / 255 - 0.5) / 0.5, atol=1e-6)
    assert np.allclose(out[2, :, :resized_w], 1.0)


def test_resize_norm_img_matches_cv2_resize() -> None:
    img = _pattern(30, 90)
    out, _ = resize_norm_img(img, [3, 48, 320])
    ref = cv2.resize(img, (144, 48)).astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    assert np.allclose(out[:, :, :144], ref, atol=1e-6)


def test_resize_without_padding_and_grey() -> None:
    out, ratio = resize_norm_img(_bgr(10, 20), [3, 32, 100], padding=False)
    assert ratio == 1.0 and np.allclose(out[2], 1.0)
    grey, ratio = resize_norm_img(_bgr(16, 32), [1, 32, 100])
    assert grey.shape == (1, 32, 100) and ratio == pytest.approx(0.64)


def test_rec_resize_img_transform_and_eval_mode() -> None:
    op = RecResizeImg(image_shape=[3, 48, 320])
    data = op({"image": _bgr(24, 48)})
    assert data["image"].shape == (3, 48, 320)
    assert data["valid_ratio"] == pytest.approx(0.3) and data["valid_ratio"].dtype == np.float32
    wide = RecResizeImg(image_shape=[3, 48, 320], eval_mode=True)({"image": _bgr(32, 640)})
    assert wide["image"].shape == (3, 48, 960) and wide["valid_ratio"] == 1.0  # grows to fit 20:1
    narrow = RecResizeImg(image_shape=[3, 48, 320], eval_mode=True)({"image": _bgr(24, 48)})
    assert narrow["image"].shape == (3, 48, 320)
    infer = RecResizeImg(image_shape=[3, 48, 320], infer_mode=True)({"image": _bgr(32, 640)})
    assert infer["image"].shape == (3, 48, 320)  # no dict path: the plain resize
    with pytest.raises(ConfigError):
        RecResizeImg(image_shape=[48, 320])


# ----------------------------------------------------------------------------- RecAug


def test_warp_identity_and_translation() -> None:
    img = _pattern(32, 96)
    pts = np.array([[0, 0], [96, 0], [96, 32], [0, 32], [48, 0], [48, 32]])
    assert np.array_equal(mls_similarity_warp(img, pts, pts), img)
    shifted = mls_similarity_warp(img, pts, pts + [4, 0])
    assert np.array_equal(shifted[:, 4:], img[:, :-4])


@pytest.mark.parametrize(
    "fn", [lambda im: tia_distort(im, 4), lambda im: tia_stretch(im, 5), tia_perspective]
)
def test_tia_keeps_shape_and_dtype(fn) -> None:
    np.random.seed(1)
    img = _pattern(32, 120)
    out = fn(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)


def _run_aug(seed: int, img: np.ndarray, **probs) -> np.ndarray:
    random.seed(seed)
    np.random.seed(seed)
    return RecAug(**probs)({"image": img.copy()})["image"]


def test_rec_aug_sanity_and_determinism() -> None:
    img = _pattern(40, 160)
    for seed in range(6):
        out = _run_aug(seed, img)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert out.shape[1] == 160 and 32 <= out.shape[0] <= 40  # crop removes at most 8 rows
        assert np.array_equal(out, _run_aug(seed, img))
    every = dict.fromkeys(
        ["tia_prob", "crop_prob", "reverse_prob", "noise_prob", "jitter_prob", "blur_prob", "hsv_aug_prob"],
        1.0,
    )
    assert np.array_equal(_run_aug(3, img, **every), _run_aug(3, img, **every))


def test_rec_aug_single_ops() -> None:
    img = _pattern(40, 160)
    none = dict.fromkeys(
        ["tia_prob", "crop_prob", "reverse_prob", "noise_prob", "jitter_prob", "blur_prob", "hsv_aug_prob"],
        0.0,
    )
    assert np.array_equal(_run_aug(0, img, **none), img)
    assert np.array_equal(_run_aug(0, img, **{**none, "reverse_prob": 1.0}), 255 - img)
    blurred = _run_aug(0, img, **{**none, "blur_prob": 1.0})
    assert np.abs(blurred.astype(int) - cv2.GaussianBlur(img, (5, 5), 1)).max() <= 1
    noisy = _run_aug(0, img, **{**none, "noise_prob": 1.0})
    assert np.abs(noisy.astype(int) - img).max() <= 2  # 0.5 * N(0, sqrt(0.1)): imperceptible
    tiny = _pattern(12, 16)  # TIA distort/stretch need h, w >= 20; perspective always runs
    assert _run_aug(0, tiny, **{**none, "tia_prob": 1.0}).shape == tiny.shape


# ----------------------------------------------------------------------------- RecConAug


def test_rec_con_aug_concatenates_until_limits() -> None:
    op = RecConAug(prob=1.0, image_shape=[48, 320, 3], max_text_length=25, ext_data_num=3)
    assert op.ext_data_num == 3 and op.max_wh_ratio == pytest.approx(320 / 48)
    base = _pattern(24, 48)
    ext = [
        {"image": _pattern(48, 96, 1), "label": "de"},  # ratios 2 + 2 = 4
        {"image": _pattern(10, 20, 2), "label": "f"},  # 4 + 2 = 6 <= 6.67
        {"image": _pattern(10, 20, 3), "label": "g"},  # 6 + 2 = 8 > 6.67: stop
    ]
    out = op({"image": base, "label": "abc", "ext_data": ext})
    assert "ext_data" not in out and out["label"] == "abcdef"
    assert out["image"].shape == (48, 288, 3)
    assert np.array_equal(out["image"][:, :96], cv2.resize(base, (96, 48)))
    assert np.array_equal(out["image"][:, 96:192], ext[0]["image"])


def test_rec_con_aug_respects_text_length_and_ratio() -> None:
    op = RecConAug(prob=1.0, image_shape=[48, 320, 3], max_text_length=25)
    long_label = {
        "image": _pattern(24, 48),
        "label": "x" * 24,
        "ext_data": [{"image": _pattern(24, 48), "label": "yz"}],
    }
    out = op(long_label)
    assert out["label"] == "x" * 24 and out["image"].shape == (24, 48, 3) and "ext_data" not in out
    wide = {"image": _pattern(10, 60), "label": "a", "ext_data": [{"image": _pattern(10, 10), "label": "b"}]}
    assert op(wide)["label"] == "a"  # 6 + 1 > 6.67
    fits = {"image": _pattern(10, 50), "label": "a", "ext_data": [{"image": _pattern(10, 10), "label": "b"}]}
    assert op(fits)["label"] == "ab"  # 5 + 1 <= 6.67
    skipped = RecConAug(prob=0.0)({"image": _pattern(10, 10), "label": "a", "ext_data": [fits]})
    assert skipped["label"] == "a" and "ext_data" not in skipped
    assert RecConAug().image_shape == [32, 320, 3] and RecConAug().ext_data_num == 1


def test_registered_with_paddleocr_config_keys() -> None:
    for name in ("RecAug", "RecConAug", "RecResizeImg", "BaseDataAugmentation"):
        assert name in TRANSFORMS._table
    check_kwargs(
        RecConAug, {"prob": 0.5, "ext_data_num": 2, "image_shape": [48, 320, 3], "max_text_length": 25}, "t"
    )
    check_kwargs(RecResizeImg, {"image_shape": [3, 48, 320], "character_dict_path": None}, "t")
    check_kwargs(RecAug, {}, "t")
    with pytest.raises(ConfigError, match="t.image_shape"):
        check_kwargs(RecResizeImg, {"image_shape": "3,48,320"}, "t")
