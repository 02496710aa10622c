"""#18 items 4-5: PaddleOCR's inference flags override the exported settings; the deploy resize
default; predict_det's filter_tag_det_res."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper

from ocr_core.config import load_config
from ocr_core.inference import metadata as md
from ocr_core.inference.det_box_filter import filter_quads, order_points_clockwise
from ocr_core.inference.paddle_flags import add_paddle_inference_arguments, det_overrides, rec_overrides

ROOT = Path(__file__).resolve().parents[2]


def _save(nodes: list, inits: list, out_shape: list, path: Path, meta: dict) -> Path:
    import onnx

    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, "h", "w"])],
                              [helper.make_tensor_value_info("maps", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    md.write_metadata(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def toy_det(path: Path, meta: dict) -> Path:
    """maps = sigmoid(-8 * mean_c(x)): black ~1.0, mid-gray (128) 0.132, white ~0."""
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [-8.0])
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "k"], ["s"]), helper.make_node("Sigmoid", ["s"], ["maps"])]
    return _save(nodes, [k], ["b", 1, "h", "w"], path, meta)


def toy_rec(path: Path, meta: dict, classes: int = 3) -> Path:
    """probs[b, t, c] = softmax_c(mean_{c,h}(x)[b, t] * c * 4): white input -> last class everywhere."""
    v = helper.make_tensor("v", TensorProto.FLOAT, [1, 1, classes], [4.0 * c for c in range(classes)])
    axes = helper.make_tensor("ax", TensorProto.INT64, [1], [2])
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "ax"], ["u"]),
             helper.make_node("Mul", ["u", "v"], ["l"]), helper.make_node("Softmax", ["l"], ["maps"], axis=2)]
    return _save(nodes, [v, axes], ["b", "t", classes], path, meta)


def det_meta(*overrides: str, config: str = "configs/det/det_mv3_db.yml") -> dict:
    return md.build_metadata(load_config(ROOT / config, list(overrides)), "det", "DB", "c" * 64, "d" * 64)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_paddle_inference_arguments(parser)
    return parser.parse_args(list(argv))


def test_student_exports_with_the_deploy_resize_unless_the_config_sets_one() -> None:
    student = det_meta(config="configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")["ocrflow.resize"]
    assert (student["limit_side_len"], student["limit_type"], student["image_shape"]) == (960, "max", None)
    set_ = det_meta("Eval.dataset.transforms.DetResizeForTest={limit_side_len: 640, limit_type: min}",
                    config="configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")["ocrflow.resize"]
    assert (set_["limit_side_len"], set_["limit_type"]) == (640, "min")
    fixed = det_meta()["ocrflow.resize"]  # det_mv3_db.yml: image_shape [736, 1280]
    assert fixed["image_shape"] == [736, 1280] and fixed["limit_side_len"] is None
    # the parity gate's ONNX side still resizes as the config's Eval does (736/min for the student)
    cfg = load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")
    assert md.eval_det_resize(cfg)["limit_side_len"] is None


def test_flags_both_spellings_and_types() -> None:
    a = parse("--det_db_thresh", "0.1", "--det-db-box-thresh", "0.2", "--det_db_unclip_ratio", "2.5",
              "--use_dilation", "True", "--det-db-score-mode", "slow", "--det_box_type", "poly",
              "--det_limit_side_len", "64", "--det-limit-type", "max")
    assert det_overrides(a) == {"thresh": 0.1, "box_thresh": 0.2, "unclip_ratio": 2.5, "use_dilation": True,
                                "score_mode": "slow", "box_type": "poly", "limit_side_len": 64,
                                "limit_type": "max", "image_shape": None, "resize_long": None}
    assert det_overrides(parse()) == {}  # nothing given: the embedded settings stay
    assert parse("--use-dilation", "false").use_dilation is False
    r = parse("--rec_image_shape", "3, 32, 100", "--rec-batch-num", "2")
    assert rec_overrides(r) == {"image_shape": [3, 32, 100], "batch_size": 2}
    with pytest.raises(SystemExit):
        parse("--det_limit_type", "middle")
    with pytest.raises(SystemExit):
        parse("--rec_image_shape", "32, 100")


def test_det_flags_override_the_export(tmp_path: Path) -> None:
    from ocr_core.inference.predictors import DetPredictor

    path = toy_det(tmp_path / "det" / "model.onnx", det_meta())
    img = np.full((100, 200, 3), 255, np.uint8)
    img[40:60, 50:150] = 128  # mid-gray bar: probability 0.132, under the exported thresh 0.3
    assert len(DetPredictor(path)(img)["points"]) == 0
    over = det_overrides(parse("--det_db_thresh", "0.1", "--det_db_box_thresh", "0.1",
                               "--det_limit_side_len", "64", "--det_limit_type", "max"))
    det = DetPredictor(path, **over)
    x, _ = det.preprocess(img)
    assert x.shape == (1, 3, 32, 64)  # the exported fixed 736x1280 is replaced by 64/max: 100x200 -> 32x64
    assert len(det(img)["points"]) == 1


def test_predict_cli_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocr_core.cli import main

    toy_det(tmp_path / "det" / "model.onnx", det_meta("Eval.dataset.transforms.DetResizeForTest.image_shape=[128, 160]"))
    img = np.full((100, 200, 3), 255, np.uint8)
    img[40:60, 50:150] = 128
    cv2.imwrite(str(tmp_path / "a.png"), img)
    base = ["predict", "--model", str(tmp_path / "det"), "--image", str(tmp_path / "a.png")]
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"] == []
    assert main([*base, "--det-db-thresh", "0.1", "--det_db_box_thresh", "0.1"]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert len(found) == 1 and found[0]["score"] == pytest.approx(0.132, abs=0.01)


def test_rec_flags_dictionary_shape_and_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocr_core.cli import main
    from ocr_core.inference.predictors import RecPredictor

    rec_cfg = {"Global": {"use_space_char": False},
               "Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]}}}
    meta = md.build_metadata(rec_cfg, "rec", "CRNN", "a", "b", character=["a", "b"])
    model = toy_rec(tmp_path / "rec" / "model.onnx", meta)
    white = np.full((32, 64, 3), 255, np.uint8)
    assert RecPredictor(model)([white])[0][0] == "b"
    (tmp_path / "xy.txt").write_text("x\ny\n", encoding="utf-8")
    over = rec_overrides(parse("--rec_char_dict_path", str(tmp_path / "xy.txt"), "--rec_image_shape", "3,32,100",
                               "--rec_batch_num", "1"))
    rec = RecPredictor(model, **over)
    assert rec.image_shape == [3, 32, 100] and rec.batch_size == 1 and rec._batch_shape([white]) == [3, 32, 100]
    assert [t for t, _ in rec([white, white])] == ["y", "y"]
    (tmp_path / "xyz.txt").write_text("x\ny\nz\n", encoding="utf-8")
    with pytest.raises(md.MetadataError, match="3 classes but the dictionary gives 4"):
        RecPredictor(model, **rec_overrides(parse("--rec_char_dict_path", str(tmp_path / "xyz.txt"))))([white])
    cv2.imwrite(str(tmp_path / "w.png"), white)
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "w.png"),
                 "--rec-char-dict-path", str(tmp_path / "xy.txt")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"][0]["text"] == "y"


def test_filter_tag_det_res_by_hand() -> None:
    # counter-clockwise from bottom-left, one corner outside a 50x40 (w x h) image
    quad = np.array([[10, 30], [60, 30.5], [60, 5], [10, 5]], np.float32)
    ordered = order_points_clockwise(quad)
    np.testing.assert_array_equal(ordered, [[10, 5], [60, 5], [60, 30.5], [10, 30]])
    out = filter_quads([quad], (40, 50))
    np.testing.assert_array_equal(out[0], [[10, 5], [49, 5], [49, 30], [10, 30]])  # clipped, truncated
    thin = np.array([[0, 0], [20, 0], [20, 3], [0, 3]], np.float32)  # 3 px high: dropped
    ok = np.array([[0, 0], [20, 0], [20, 4], [0, 4]], np.float32)
    assert filter_quads([thin, ok], (40, 50)).shape == (1, 4, 2)


def test_predictor_clips_boxes_into_the_image(tmp_path: Path) -> None:
    from ocr_core.inference.predictors import DetPredictor

    path = toy_det(tmp_path / "m.onnx", det_meta("Eval.dataset.transforms.DetResizeForTest.image_shape=[128, 160]"))
    img = np.full((100, 200, 3), 255, np.uint8)
    img[40:60, 80:200] = 0  # touches the right edge: DB clips to x <= width (200), predict_det to width - 1
    raw = DetPredictor(path, filter_boxes=False)(img)["points"]
    assert raw[0][:, 0].max() == 200
    boxes = DetPredictor(path)(img)["points"]
    assert len(boxes) == 1 and boxes[0][:, 0].max() == 199
    np.testing.assert_array_equal(boxes[0], filter_quads(raw, (100, 200))[0])
