"""Recognition dictionaries and label encoders (PaddleOCR label_ops semantics)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ocr_core.data import TRANSFORMS
from ocr_core.data.dictionary import DICTS_DIR, CharacterSet, read_dict_file, resolve_dict_path
from ocr_core.data.transforms.rec_label import (
    CTCLabelEncode,
    MultiLabelEncode,
    NRTRLabelEncode,
    SARLabelEncode,
)
from ocr_core.errors import ConfigError
from ocr_core.registry import check_kwargs

EN = "ppocr/utils/en_dict.txt"
ASCII_ORDER = [chr(c) for c in range(0x30, 0x7F)] + [chr(c) for c in range(0x21, 0x30)] + [" "]


# ------------------------------------------------------------------------------- dictionaries


def test_shipped_en_dict_is_paddleocr_order() -> None:
    chars = read_dict_file(DICTS_DIR / "en_dict.txt")
    assert len(chars) == 95
    assert chars == ASCII_ORDER  # 0-9 :;<=>?@ A-Z [\]^_` a-z {|}~ then !"#$%&'()*+,-./ then space
    assert chars[0] == "0" and chars[-2] == "/" and chars[-1] == " "


def test_shipped_ic15_dict() -> None:
    assert read_dict_file(DICTS_DIR / "ic15_dict.txt") == list("0123456789abcdefghijklmnopqrstuvwxyz")


@pytest.mark.parametrize(
    "name", ["ppocr/utils/en_dict.txt", "./ppocr/utils/en_dict.txt", "en_dict.txt", "/nowhere/en_dict.txt"]
)
def test_resolve_paddleocr_names(name: str) -> None:
    assert resolve_dict_path(name) == DICTS_DIR / "en_dict.txt"


def test_resolve_ic15_and_existing_path(tmp_path) -> None:
    assert resolve_dict_path("ppocr/utils/ic15_dict.txt") == DICTS_DIR / "ic15_dict.txt"
    own = tmp_path / "en_dict.txt"  # an existing file wins over the shipped one of the same name
    own.write_text("x\ny\n", encoding="utf-8")
    assert resolve_dict_path(str(own)) == own
    assert CharacterSet.from_config(str(own)).chars == ["x", "y"]


@pytest.mark.skipif((DICTS_DIR / "ppocr_keys_v1.txt").exists(), reason="Chinese dict is shipped")
def test_resolve_missing_chinese_dict_explains() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_dict_path("ppocr/utils/ppocr_keys_v1.txt")
    msg = str(err.value)
    assert "ppocr_keys_v1.txt" in msg and "Download" in msg and "character_dict_path" in msg


def test_resolve_unknown_dict_lists_shipped() -> None:
    with pytest.raises(ConfigError, match="not one of the dictionaries shipped") as err:
        resolve_dict_path("ppocr/utils/dict/nope_dict.txt")
    assert {"en_dict.txt", "ic15_dict.txt", "french_dict.txt", "ppocr_keys_v1.txt"} <= \
        set(str(err.value).rsplit(": ", 1)[1].split(", "))


def test_default_charset_is_36_lowercase() -> None:
    cs = CharacterSet.from_config(None, use_space_char=True)  # use_space_char ignored without a dict
    assert cs.chars == list("0123456789abcdefghijklmnopqrstuvwxyz")
    assert cs.lower and len(cs.ctc_classes) == 37 and cs.ctc_classes[0] == "blank"
    # '1' is chars[1] -> CTC id 2; 'a' is chars[10] -> 11; 'B' lowercases to 'b' -> 12
    assert cs.encode("aB1") == ([11, 12, 2], [])
    assert cs.encode("aB1", offset=0) == ([10, 11, 1], [])


def test_en_dict_with_space_has_97_classes_and_last_space_wins() -> None:
    cs = CharacterSet.from_config(EN, use_space_char=True)
    assert len(cs.ctc_classes) == 97  # blank + 95 + appended space (SPEC 2.1)
    assert cs.chars[94] == " " and cs.chars[95] == " "
    ids, unknown = cs.encode("a b")
    # 'a' is chars[49] (10 digits + 7 + 26 + 6 + 0); space maps to the appended entry, id 96
    assert ids == [50, 96, 51] and unknown == []
    assert not cs.lower and cs.encode("A")[0] == [18]


def test_sha256_is_over_the_class_list() -> None:
    cs = CharacterSet.from_config(EN, use_space_char=False)
    want = hashlib.sha256("\n".join(["blank", *ASCII_ORDER]).encode()).hexdigest()
    assert cs.sha256() == want
    assert CharacterSet.from_config(EN, use_space_char=True).sha256() != want


# ------------------------------------------------------------------------------- CTC encoder


def test_ctc_encode_round_trip_with_space_and_unknown() -> None:
    op = CTCLabelEncode(max_text_length=25, character_dict_path=EN, use_space_char=True)
    out = op({"label": "Hé llo€"})
    assert out is not None
    cs = op.charset
    # 'H' = chars[17 + 7] -> 25, space -> 96 (appended), 'l' = chars[49 + 11] -> 61, 'o' -> 64
    assert out["length"] == 5 and out["length"].dtype == np.int64
    assert out["label"].dtype == np.int64 and out["label"].shape == (25,)
    assert out["label"][:5].tolist() == [25, 96, 61, 61, 64] and not out["label"][5:].any()
    assert cs.decode(out["label"][:5].tolist()) == "H llo"
    assert out["unknown_chars"] == 2
    # label_ace: histogram over the 97 classes of the padded label (20 pads counted at 0)
    assert out["label_ace"].shape == (97,) and out["label_ace"][0] == 20
    assert out["label_ace"][61] == 2 and out["label_ace"].sum() == 25
    op({"label": "é!"})
    assert op.unknown_counts == {"é": 2, "€": 1}


def test_ctc_encode_rejections() -> None:
    op = CTCLabelEncode(max_text_length=25, character_dict_path=EN)
    assert op({"label": ""}) is None
    assert op({"label": "a" * 26}) is None
    assert op({"label": "a" * 25})["length"] == 25
    # the length limit applies to the raw text, before unknown characters are dropped
    assert op({"label": "a" * 24 + "éé"}) is None
    assert op({"label": "€€"}) is None  # nothing left
    assert op.unknown_counts == {"€": 2}


def test_ctc_default_dict_lowercases_and_lower_flag() -> None:
    default = CTCLabelEncode(max_text_length=10)
    up, low = default({"label": "ABC"}), default({"label": "abc"})
    assert up["label"].tolist() == low["label"].tolist() == [11, 12, 13] + [0] * 7
    assert len(default.character) == 37
    cased = CTCLabelEncode(max_text_length=10, character_dict_path=EN)
    assert cased({"label": "A"})["label"][0] != cased({"label": "a"})["label"][0]
    lowered = CTCLabelEncode(max_text_length=10, character_dict_path=EN, lower=True)
    assert lowered({"label": "A"})["label"][0] == cased({"label": "a"})["label"][0]


# ------------------------------------------------------------------------------- SAR / Multi


def test_sar_encode_layout_and_24_char_rejection() -> None:
    op = SARLabelEncode(max_text_length=25, character_dict_path=EN, use_space_char=True)
    assert len(op.character) == 99  # 96 chars + <UKN>, <BOS/EOS>, <PAD> = CTC 97 + 2
    assert (op.unknown_idx, op.start_idx, op.end_idx, op.padding_idx) == (96, 97, 97, 98)
    out = op({"label": "ab"})
    assert out["label"].tolist() == [97, 49, 50, 97] + [98] * 21
    assert out["length"] == 2
    assert op({"label": "a" * 23})["label"].tolist() == [97] + [49] * 23 + [97]
    assert op({"label": "a" * 24}) is None  # len >= max_text_length - 1
    assert op({"label": "a" * 25}) is None
    assert op.get_ignored_tokens() == [98]


def test_nrtr_encode() -> None:
    op = NRTRLabelEncode(max_text_length=6)
    assert op({"label": "a1"})["label"].tolist() == [2, 14, 5, 3, 0, 0]  # 'a'=10+4, '1'=1+4
    assert op({"label": "abcde"}) is None


def test_multi_label_encode_keys_and_rejection() -> None:
    op = MultiLabelEncode(max_text_length=25, character_dict_path=EN, use_space_char=True)
    img = np.zeros((4, 4, 3), np.uint8)
    out = op({"image": img, "label": "a b", "img_path": "x.jpg", "other": 1})
    assert set(out) == {
        "img_path",
        "image",
        "label_ctc",
        "label_sar",
        "length",
        "valid_ratio",
        "unknown_chars",
    }
    assert out["image"] is img and out["img_path"] == "x.jpg"
    assert out["label_ctc"][:3].tolist() == [50, 96, 51] and out["length"] == 3
    assert out["label_sar"][:5].tolist() == [97, 49, 95, 50, 97]
    assert out["valid_ratio"] == 1.0
    assert op({"image": img, "label": "x" * 24}) is None  # SAR drops 24-25 char texts
    assert op({"image": img, "label": "x" * 23}) is not None
    gtc = MultiLabelEncode(max_text_length=25, gtc_encode="NRTRLabelEncode")
    assert "label_gtc" in gtc({"image": img, "label": "ab"})
    with pytest.raises(ConfigError, match="gtc_encode"):
        MultiLabelEncode(gtc_encode="Bogus")


def test_registered_with_paddleocr_config_keys() -> None:
    for name in ("CTCLabelEncode", "SARLabelEncode", "MultiLabelEncode", "NRTRLabelEncode"):
        assert name in TRANSFORMS._table
    glob = {"max_text_length": 25, "character_dict_path": EN, "use_space_char": True}
    check_kwargs(CTCLabelEncode, glob, "Train.dataset.transforms[2].CTCLabelEncode")
    check_kwargs(MultiLabelEncode, {**glob, "gtc_encode": None}, "t")
    with pytest.raises(ConfigError, match="t.max_text_length"):
        check_kwargs(SARLabelEncode, {"max_text_length": "25"}, "t")
    with pytest.raises(ConfigError, match="unknown key"):
        check_kwargs(CTCLabelEncode, {"bogus": 1}, "t")
