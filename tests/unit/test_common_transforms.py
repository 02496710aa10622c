"""DecodeImage, NormalizeImage (numbers by hand), scale parsing, ToCHWImage, KeepKeys, create_operators."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import pytest

from ocr_core.data import TRANSFORMS
from ocr_core.data.transforms import create_operators, transform
from ocr_core.data.transforms.common import DecodeImage, KeepKeys, NormalizeImage, ToCHWImage, parse_scale
from ocr_core.errors import ConfigError

# one pixel per channel value, BGR: blue 255, green 0, red 51
BGR = np.array([[[255, 0, 51], [0, 0, 0]]], dtype=np.uint8)


def _png(img):
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_decode_modes():
    raw = _png(BGR)
    out = DecodeImage(img_mode="BGR")({"image": raw})
    assert out["image"].dtype == np.uint8 and out["image"].shape == (1, 2, 3)
    assert out["image"][0, 0].tolist() == [255, 0, 51]
    assert DecodeImage(img_mode="RGB")({"image": raw})["image"][0, 0].tolist() == [51, 0, 255]
    gray = DecodeImage(img_mode="GRAY")({"image": raw})["image"]
    assert gray.shape == (1, 2, 3) and gray[0, 0, 0] == gray[0, 0, 2]
    chw = DecodeImage(img_mode="BGR", channel_first=True)({"image": raw})["image"]
    assert chw.shape == (3, 1, 2) and chw[:, 0, 0].tolist() == [255, 0, 51]
    assert DecodeImage()({"image": b"garbage"}) is None
    assert DecodeImage()({"image": b""}) is None
    with pytest.raises(ConfigError):
        DecodeImage(img_mode="HSV")


def test_normalize_by_hand_bgr_with_listed_mean_std():
    op = NormalizeImage(scale="1./255.", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], order="hwc")
    out = op({"image": BGR.copy()})["image"]
    assert out.dtype == np.float32 and out.shape == (1, 2, 3)
    # channel 0 (blue 255) uses mean[0]/std[0], as PaddleOCR does on BGR images
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert out[0, 0].tolist() == pytest.approx([2.2489083, -2.0357143, -0.9155556], abs=1e-5)
    assert out[0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    # rec style (x/255 - 0.5)/0.5 on a CHW image
    op = NormalizeImage(scale=0.00392156862745098, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], order="chw")
    chw = op({"image": BGR.transpose(2, 0, 1).copy()})["image"]
    assert chw[:, 0, 0].tolist() == pytest.approx([1.0, -1.0, -0.6], abs=1e-6)


def test_normalize_defaults_are_imagenet_and_one_over_255():
    op = NormalizeImage(order="hwc")
    assert float(op.scale) == pytest.approx(1 / 255)
    assert op.mean.ravel().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert op.std.ravel().tolist() == pytest.approx([0.229, 0.224, 0.225])


@pytest.mark.parametrize(
    "value, expected",
    [("1./255.", 1 / 255), ("1/255", 1 / 255), (" 2 / 4 ", 0.5), ("0.5", 0.5), (".5", 0.5), ("1e-2", 0.01),
     (0.25, 0.25), (1, 1.0), (None, 1 / 255)],
)
def test_parse_scale(value, expected):
    assert parse_scale(value) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["__import__('os').system('true')", "1/0", "1./", "abc", "1/2/3", "2**8"])
def test_parse_scale_rejects_anything_else(bad):
    with pytest.raises(ConfigError):
        parse_scale(bad)


def test_to_chw_and_keep_keys_order():
    data = {"image": np.zeros((4, 5, 3), np.float32), "shape": np.array([4, 5, 1.0, 1.0]), "extra": 1}
    data = ToCHWImage()(data)
    assert data["image"].shape == (3, 4, 5)
    out = KeepKeys(keep_keys=["shape", "image"])(data)
    assert isinstance(out, list) and out[0] is data["shape"] and out[1] is data["image"]
    with pytest.raises(ConfigError, match="missing_key"):
        KeepKeys(keep_keys=["missing_key"])(data)


class _NeedsGlobals:
    def __init__(self, max_text_length: int = 5, character_dict_path: Optional[str] = None,
                 factor: float = 1.0) -> None:
        self.max_text_length = max_text_length
        self.character_dict_path = character_dict_path
        self.factor = factor

    def __call__(self, data):
        return None if data.get("reject") else data


def test_create_operators_injects_globals(monkeypatch):
    monkeypatch.setitem(TRANSFORMS._table, "_NeedsGlobals", _NeedsGlobals)
    g = {"max_text_length": 40, "character_dict_path": "d.txt", "use_space_char": True, "seed": 3}
    ops = create_operators([{"_NeedsGlobals": None}, {"_NeedsGlobals": {"max_text_length": 7}},
                            {"DecodeImage": {"img_mode": "BGR"}}], g)
    assert (ops[0].max_text_length, ops[0].character_dict_path) == (40, "d.txt")
    assert ops[1].max_text_length == 7  # the op's own value wins
    assert isinstance(ops[2], DecodeImage) and ops[2].img_mode == "BGR"
    assert transform({"x": 1}, ops[:2]) == {"x": 1}
    assert transform({"reject": True}, ops[:2]) is None


def test_create_operators_errors(monkeypatch):
    monkeypatch.setitem(TRANSFORMS._table, "_NeedsGlobals", _NeedsGlobals)
    with pytest.raises(ConfigError, match=r"transforms\[0\].*unknown transform"):
        create_operators([{"NoSuchOp": None}])
    with pytest.raises(ConfigError, match=r"transforms\[1\]._NeedsGlobals.factor"):
        create_operators([{"ToCHWImage": None}, {"_NeedsGlobals": {"factor": "x"}}])
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        create_operators([{"NormalizeImage": {"bogus": 1}}])
    with pytest.raises(ConfigError, match="single-key"):
        create_operators([{"ToCHWImage": None, "KeepKeys": None}])
