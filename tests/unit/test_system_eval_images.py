"""Issue #15 items 5 and 7 in the DAG's system eval: images are read header first (no decompression
bomb decoded) and an unreadable one is scored as a miss for every model, never a crash."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("kfp")

from components.steps.models import detection_pairs, system_eval  # noqa: E402
from ocr_core.inference import metadata as md  # noqa: E402
from tests.unit.test_image_limits import bomb_png  # noqa: E402
from tests.unit.test_predict_flags import det_meta, toy_det, toy_rec  # noqa: E402


def _label(name: str) -> str:
    boxes = [{"transcription": "b", "points": [[20, 20], [100, 20], [100, 60], [20, 60]]}]
    return f"{name}\t{json.dumps(boxes)}"


@pytest.fixture
def models(tmp_path):
    det = toy_det(tmp_path / "det" / "model.onnx", det_meta("Eval.dataset.transforms.DetResizeForTest={limit_side_len: 160}"))
    rec_cfg = {"Global": {"use_space_char": False},
               "Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]}}}
    rec = toy_rec(tmp_path / "rec" / "model.onnx", md.build_metadata(rec_cfg, "rec", "CRNN", "a", "b", character=["a", "b"]))
    return det, rec


def test_bomb_and_missing_images_are_misses(tmp_path, models):
    img = np.full((120, 160, 3), 255, np.uint8)
    img[20:60, 20:100] = 0  # one dark word where the ground truth says
    cv2.imwrite(str(tmp_path / "ok.png"), img)
    bomb_png(tmp_path / "bomb.png")  # declares 20000 x 20000: 1.2 GB if decoded
    labels = tmp_path / "test.txt"
    labels.write_text("\n".join([_label("ok.png"), _label("bomb.png"), _label("missing.png")]) + "\n", encoding="utf-8")
    out = system_eval(*models, labels, tmp_path)
    assert out["images"] == 3.0 and out["gt_boxes"] == 3.0  # nothing excluded: both bad images are misses
    assert out["recall"] <= 1 / 3 + 1e-9
    pairs = detection_pairs(models[0], models[0], labels, tmp_path, n=3)
    assert [p["image"] for p in pairs] == ["ok.png"]  # pictures only of what could be read
