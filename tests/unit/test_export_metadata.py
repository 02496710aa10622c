"""Export metadata: what is embedded, round trip, refusal without it, and a torch-free predictor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ocr_core.config import load_config
from ocr_core.inference import metadata as md

ROOT = Path(__file__).resolve().parents[2]


def toy_det_model(path: Path, meta: dict | None) -> Path:
    """x [B,3,H,W] -> sigmoid(-8 * mean_c(x)) [B,1,H,W]: dark pixels (text) score high."""
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [-8.0])
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "k"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["maps"])]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["b", 1, "h", "w"])], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta is not None:
        md.write_metadata(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def det_meta(**cfg_overrides: str) -> dict:
    cfg = load_config(ROOT / "configs/det/det_mv3_db.yml", [f"{k}={v}" for k, v in cfg_overrides.items()])
    return md.build_metadata(cfg, "det", "DB", "c" * 64, "d" * 64)


def test_det_metadata_from_config() -> None:
    meta = det_meta()
    assert meta["ocrflow.model_type"] == "det" and meta["ocrflow.algorithm"] == "DB"
    assert meta["ocrflow.resize"]["image_shape"] == [736, 1280]
    assert meta["ocrflow.resize"]["limit_side_len"] is None
    norm = meta["ocrflow.normalize"]
    assert norm["scale"] == pytest.approx(1 / 255) and norm["mean"] == [0.485, 0.456, 0.406]
    assert norm["std"] == [0.229, 0.224, 0.225] and norm["channel_order"] == "BGR"
    post = meta["ocrflow.postprocess"]
    assert (post["thresh"], post["box_thresh"], post["unclip_ratio"], post["max_candidates"]) == (0.3, 0.6, 1.5, 1000)
    assert (post["score_mode"], post["box_type"], post["use_dilation"]) == ("fast", "quad", False)
    assert md.validate_metadata(meta) == "det"


def test_student_default_resize_and_rec_metadata() -> None:
    cfg = load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")
    meta = md.build_metadata(cfg, "det", "DB", "a", "b")
    # nothing set in the config: PaddleOCR's deploy default (predict_det 960/max), not eval's 736/min (#18)
    assert meta["ocrflow.resize"]["limit_side_len"] == 960 and meta["ocrflow.resize"]["limit_type"] == "max"
    assert meta["ocrflow.resize"]["image_shape"] is None
    rec_cfg = {"Global": {"use_space_char": True},
               "Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": [3, 32, 100]}}]}}}
    rec = md.build_metadata(rec_cfg, "rec", "CRNN", "a", "b", character=list("ab") + [" "])
    assert rec["ocrflow.resize"]["image_shape"] == [3, 32, 100]
    assert rec["ocrflow.character"] == ["a", "b", " "] and rec["ocrflow.use_space_char"] is True
    assert md.validate_metadata(rec, model_type="rec") == "rec"
    with pytest.raises(md.MetadataError, match="needs its character"):
        md.build_metadata(rec_cfg, "rec", "CRNN", "a", "b")


def test_round_trip_through_onnx_file(tmp_path: Path) -> None:
    meta = det_meta()
    meta["ocrflow.character"] = ["中", "文", "\n"]  # non-ASCII and control characters survive JSON
    path = toy_det_model(tmp_path / "m.onnx", meta)
    back = md.read_metadata(path)
    assert back == json.loads(json.dumps(meta))
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert all(isinstance(v, str) for v in props.values())
    assert json.loads(props["ocrflow.postprocess"])["box_thresh"] == 0.6


def test_validate_names_missing_keys() -> None:
    meta = det_meta()
    del meta["ocrflow.postprocess"], meta["ocrflow.normalize"]
    with pytest.raises(md.MetadataError) as err:
        md.validate_metadata(meta, "m.onnx")
    assert "ocrflow.postprocess" in str(err.value) and "ocrflow.normalize" in str(err.value)
    assert "ocrflow export" in str(err.value)
    with pytest.raises(md.MetadataError, match="is a det model, expected a rec"):
        md.validate_metadata(det_meta(), model_type="rec")


def test_predictor_refuses_model_without_metadata(tmp_path: Path) -> None:
    from ocr_core.inference.predictors import DetPredictor, RecPredictor

    path = toy_det_model(tmp_path / "plain" / "model.onnx", None)
    with pytest.raises(md.MetadataError) as err:
        DetPredictor(path.parent)
    msg = str(err.value)
    assert "no OCRFlow inference metadata" in msg and "ocrflow.model_type" in msg and "ocrflow export" in msg
    with pytest.raises(md.MetadataError):
        RecPredictor(path)


def test_det_predictor_overrides_and_boxes(tmp_path: Path) -> None:
    from ocr_core.inference.predictors import DetPredictor

    path = toy_det_model(tmp_path / "toy" / "model.onnx", det_meta())
    det = DetPredictor(path, image_shape=[128, 160], box_thresh=0.5, intra_op_num_threads=1)
    assert det.resize["image_shape"] == [128, 160] and det.post["box_thresh"] == 0.5
    assert det.post["unclip_ratio"] == 1.5  # untouched settings come from the metadata
    img = np.full((100, 200, 3), 255, np.uint8)
    img[40:60, 50:150] = 0
    x, shape = det.preprocess(img)
    assert x.shape == (1, 3, 128, 160) and x.dtype == np.float32
    np.testing.assert_allclose(shape[0], [100, 200, 1.28, 0.8], rtol=1e-6)
    # white pixel: (1 - mean) / std, per BGR channel in the listed order
    np.testing.assert_allclose(x[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                               rtol=1e-5)
    res = det(img)
    assert len(res["points"]) == 1
    (x0, y0), (x1, y1) = res["points"][0].min(0), res["points"][0].max(0)
    # the dark bar (x 50..150, y 40..60) is 80 x 25.6 in the 160 x 128 bitmap; unclip 1.5 pushes each
    # side out by D = A * r / L = 2048 * 1.5 / 211.2 = 14.5 bitmap px = 18.2 px in x, 11.3 px in y
    assert abs(x0 - 32) <= 3 and abs(x1 - 168) <= 3 and abs(y0 - 29) <= 3 and abs(y1 - 71) <= 3, (x0, x1, y0, y1)
    with pytest.raises(TypeError, match="unknown DetPredictor setting"):
        DetPredictor(path, threshold=0.1)


def test_predict_cli_never_imports_torch(tmp_path: Path) -> None:
    model_dir = tmp_path / "det"
    toy_det_model(model_dir / "model.onnx", det_meta(**{"Eval.dataset.transforms.DetResizeForTest.image_shape": "[128, 160]"}))
    img = np.full((100, 200, 3), 255, np.uint8)
    img[40:60, 50:150] = 0
    cv2.imwrite(str(tmp_path / "a.png"), img)
    code = ("import sys, json; from ocr_core.cli import main; "
            f"rc = main(['predict', '--model', {str(model_dir)!r}, '--image', {str(tmp_path / 'a.png')!r}, "
            f"'--out', {str(tmp_path / 'vis')!r}]); "
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "NO_TORCH"
    record = json.loads(lines[0])
    assert len(record["results"]) == 1 and record["results"][0]["score"] > 0.9
    assert (tmp_path / "vis" / "a.png").is_file() and (tmp_path / "vis" / "results.json").is_file()
