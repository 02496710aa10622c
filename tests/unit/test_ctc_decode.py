"""Greedy CTC decoding on hand-made probability sequences (PaddleOCR CTCLabelDecode semantics)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ocr_core.postprocess import POSTPROCESS
from ocr_core.postprocess.rec_postprocess import CTCLabelDecode, DistillationCTCLabelDecode


@pytest.fixture()
def abc_dict(tmp_path) -> str:
    path = tmp_path / "abc_dict.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    return str(path)  # classes: 0 blank, 1 a, 2 b, 3 c


def _probs(steps: list[tuple[int, float]], num_classes: int = 4) -> np.ndarray:
    """One [T, C] row per (argmax class, its probability); the rest spread evenly."""
    out = np.zeros((len(steps), num_classes), np.float32)
    for t, (cls, p) in enumerate(steps):
        out[t] = (1.0 - p) / (num_classes - 1)
        out[t, cls] = p
    return out


def _batch(abc_dict: str) -> np.ndarray:
    seqs = [
        # a a _ a b b -> "aab": kept steps 0 (a), 3 (a after a blank), 4 (b)
        [(1, 0.9), (1, 0.8), (0, 0.7), (1, 0.6), (2, 0.5), (2, 0.95)],
        # a a a a a a (repeats without a blank collapse) -> "a", kept step 0 only
        [(1, 0.4), (1, 0.9), (1, 0.9), (1, 0.9), (1, 0.9), (1, 0.9)],
        # blanks only -> "" with confidence 0
        [(0, 0.99)] * 6,
        # _ c _ c b _ -> "ccb": kept steps 1, 3, 4
        [(0, 0.9), (3, 0.7), (0, 0.9), (3, 0.5), (2, 0.6), (0, 0.9)],
    ]
    return np.stack([_probs(s) for s in seqs])


def test_golden_sequences(abc_dict: str) -> None:
    dec = CTCLabelDecode(character_dict_path=abc_dict)
    out = dec(_batch(abc_dict))
    assert [t for t, _ in out] == ["aab", "a", "", "ccb"]
    assert out[0][1] == pytest.approx((0.9 + 0.6 + 0.5) / 3, abs=1e-6)
    assert out[1][1] == pytest.approx(0.4, abs=1e-6)
    assert out[2][1] == 0.0
    assert out[3][1] == pytest.approx((0.7 + 0.5 + 0.6) / 3, abs=1e-6)
    assert all(isinstance(c, float) for _, c in out)


def test_input_forms(abc_dict: str) -> None:
    torch = pytest.importorskip("torch")
    dec = CTCLabelDecode(character_dict_path=abc_dict)
    probs = _batch(abc_dict)
    want = dec(probs)
    assert dec({"ctc": probs}) == want
    assert dec([np.zeros_like(probs), probs]) == want  # list/tuple: the last item
    got = dec(torch.from_numpy(probs).requires_grad_(True))
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [c for _, c in got] == pytest.approx([c for _, c in want])
    bf16 = dec({"ctc": torch.from_numpy(probs).to(torch.bfloat16)})
    assert [t for t, _ in bf16] == ["aab", "a", "", "ccb"]
    with pytest.raises(ValueError):
        dec(probs[0])


def test_label_decoding_keeps_repeats(abc_dict: str) -> None:
    dec = CTCLabelDecode(character_dict_path=abc_dict)
    preds, labels = dec(_batch(abc_dict)[:2], label=np.array([[1, 1, 2, 0, 0], [3, 0, 0, 0, 0]]))
    assert [t for t, _ in preds] == ["aab", "a"]
    assert labels == [("aab", 1.0), ("c", 1.0)]


def test_default_charset_and_space(tmp_path) -> None:
    default = CTCLabelDecode()
    assert len(default.character) == 37
    probs = np.zeros((1, 3, 37), np.float32)
    probs[0, [0, 1, 2], [11, 0, 2]] = 1.0  # 'a', blank, '1'
    assert default(probs) == [("a1", 1.0)]
    en = CTCLabelDecode(character_dict_path="ppocr/utils/en_dict.txt", use_space_char=True)
    assert len(en.character) == 97
    probs = np.zeros((1, 3, 97), np.float32)
    probs[0, [0, 1, 2], [50, 96, 95]] = 1.0  # 'a', appended space, the dictionary's own space
    assert en(probs)[0][0] == "a  "


def test_arabic_dict_reverses_runs(tmp_path) -> None:
    path = tmp_path / "arabic_dict.txt"
    path.write_text("\u0627\n\u0628\n1\n2\n", encoding="utf-8")
    dec = CTCLabelDecode(character_dict_path=str(path))
    probs = np.zeros((1, 4, 5), np.float32)
    probs[0, range(4), [1, 2, 3, 4]] = 1.0  # ا ب 1 2
    assert dec(probs)[0][0] == "12\u0628\u0627"


def test_distillation_decode(abc_dict: str) -> None:
    dec = DistillationCTCLabelDecode(
        model_name=["Student", "Teacher"], key="head_out", multi_head=True, character_dict_path=abc_dict
    )
    probs = _batch(abc_dict)
    preds = {"Student": {"head_out": {"ctc": probs, "sar": None}}, "Teacher": {"ctc": probs[::-1]}}
    out = dec(preds)
    assert [t for t, _ in out["Student"]] == ["aab", "a", "", "ccb"]
    assert [t for t, _ in out["Teacher"]] == ["ccb", "", "a", "aab"]
    assert DistillationCTCLabelDecode(character_dict_path=abc_dict).model_name == ["student"]


def test_registered_and_framework_free() -> None:
    assert POSTPROCESS._table["CTCLabelDecode"] is CTCLabelDecode
    assert "DistillationCTCLabelDecode" in POSTPROCESS._table
    code = "import sys, ocr_core.postprocess.rec_postprocess; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
