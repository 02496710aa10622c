"""Export -> onnxruntime parity (det, distilled student, CRNN, SVTR_LCNet), the metric gate, the
TensorRT fallback and det+rec end to end with the official PP-OCRv3 weights."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import yaml

from ocr_core.cli import main
from ocr_core.config import load_config
from ocr_core.export.onnx_export import export_onnx, load_export_model, op_counts
from ocr_core.export.parity import check_parity
from ocr_core.inference import metadata as md
from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DET_CONFIGS = {"det_mv3_db": "configs/det/det_mv3_db.yml",
               "ppocrv3_student": "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"}
REC_ARCHS = {
    "crnn_mv3_bilstm": ({"model_type": "rec", "algorithm": "CRNN",
                         "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large"},
                         "Neck": {"name": "SequenceEncoder", "encoder_type": "rnn", "hidden_size": 96},
                         "Head": {"name": "CTCHead", "fc_decay": 0.0}}, [3, 32, 100]),
    "svtr_lcnet": ({"model_type": "rec", "algorithm": "SVTR_LCNet",
                    "Backbone": {"name": "MobileNetV1Enhance", "scale": 0.5, "last_conv_stride": [1, 2],
                                 "last_pool_type": "avg"},
                    "Neck": {"name": "SequenceEncoder", "encoder_type": "svtr", "dims": 64, "depth": 2,
                             "hidden_dims": 120, "use_guide": True},
                    "Head": {"name": "CTCHead", "fc_decay": 1e-5}}, [3, 48, 320]),
}


def calibrate(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.nn.Module:
    """Random weights, but BN statistics from data, so activations stay O(1) like a trained model."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(*shape))
        head = getattr(model, "head", None)
        if head is not None and hasattr(head, "binarize"):
            # Random DB heads emit logits in the hundreds, which turns float32 rounding noise
            # into ~1e-4 output noise; a trained head's logits are O(10).
            head.binarize.conv3.weight.mul_(0.1)
    return model.eval()


def det_checkpoint(tmp_path: Path, arch: dict) -> Path:
    model = calibrate(build_model(arch), (2, 3, 96, 96))
    return save_checkpoint(tmp_path / "det_ckpt", {"model": model.state_dict(), "architecture": arch})


def assert_fast_graph(proto: onnx.ModelProto) -> dict[str, int]:
    ops = op_counts(proto)
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Clip" not in ops, ops
    assert ops.get("HardSwish", 0) > 0 and ops.get("HardSigmoid", 0) > 0, ops
    return ops


@pytest.mark.parametrize("name", list(DET_CONFIGS))
def test_det_export_parity(tmp_path: Path, name: str) -> None:
    cfg = load_config(ROOT / DET_CONFIGS[name])
    ckpt = det_checkpoint(tmp_path, cfg["Architecture"])
    result = export_onnx(cfg, tmp_path / "out", checkpoint=str(ckpt))
    proto = onnx.load(str(result.onnx_path))
    ops = assert_fast_graph(proto)
    assert ops["HardSigmoid"] == 8
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"] and proto.opset_import[0].version == 17
    assert yaml.safe_load(result.config_path.read_text())["Architecture"] == cfg["Architecture"]
    meta = md.read_metadata(result.onnx_path)
    assert meta["ocrflow.checkpoint_sha256"] and len(meta["ocrflow.config_sha256"]) == 64
    report = check_parity(cfg, result.onnx_path, exported=result.exported, with_metric=False)
    assert [t["shape"] for t in report.tensor] == [[1, 3, 64, 96], [2, 3, 128, 128], [1, 3, 96, 160]]
    assert report.passed and report.max_abs <= 1e-4, report.tensor


def test_distillation_student_role_cli(tmp_path: Path) -> None:
    student_cfg = load_config(ROOT / DET_CONFIGS["ppocrv3_student"])
    teacher_arch = load_config(ROOT / DET_CONFIGS["det_mv3_db"])["Architecture"]
    arch = {"name": "DistillationModel", "algorithm": "Distillation", "model_type": "det",
            "Models": {"Student": {**student_cfg["Architecture"], "pretrained": None},
                       "Teacher": {**teacher_arch, "freeze_params": True}}}
    dm = build_model(arch)
    for role in ("Student", "Teacher"):
        calibrate(dm[role], (2, 3, 96, 96))
    ckpt = save_checkpoint(tmp_path / "cml", {"model": dm.state_dict(), "architecture": arch})
    cfg = copy.deepcopy(student_cfg)
    cfg["Global"].pop("_config_file", None)
    cfg["Architecture"] = arch
    cfg_path = tmp_path / "cml.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "student_onnx"
    rc = main(["export", "-c", str(cfg_path), "-o", f"Global.pretrained_model={ckpt}", "--role", "Student",
               "--out", str(out), "--check", "--no-metric"])
    assert rc == 0
    meta = md.read_metadata(out / "model.onnx")
    assert meta["ocrflow.role"] == "Student" and meta["ocrflow.algorithm"] == "DB"
    import onnxruntime as ort

    x = torch.randn(1, 3, 96, 128)
    dm["Student"].export_mode = True
    with torch.no_grad():
        ref = dm["Student"].eval()(x).numpy()
    got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4
    # plain student config + distillation checkpoint: the role is required
    rc = main(["export", "-c", str(ROOT / DET_CONFIGS["ppocrv3_student"]), "-o", f"Global.pretrained_model={ckpt}",
               "--out", str(tmp_path / "x")])
    assert rc == 2


@pytest.mark.parametrize("name", list(REC_ARCHS))
def test_rec_export_parity(tmp_path: Path, name: str) -> None:
    arch, shape = REC_ARCHS[name]
    cfg = {"Global": {"character_dict_path": None, "use_space_char": False}, "Architecture": copy.deepcopy(arch),
           "PostProcess": {"name": "CTCLabelDecode"},
           "Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": shape}}]}}}
    exported = load_export_model(cfg)
    calibrate(exported.model, (2, *shape))
    exported.model.export_mode = True
    result = export_onnx(cfg, tmp_path / "rec", exported=exported)
    proto = onnx.load(str(result.onnx_path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", shape[0], shape[1], "width"]
    assert "BatchNormalization" not in op_counts(proto)
    meta = md.read_metadata(result.onnx_path)
    assert meta["ocrflow.character"] == list("0123456789abcdefghijklmnopqrstuvwxyz")
    report = check_parity(cfg, result.onnx_path, exported=exported)
    assert [t["shape"][3] for t in report.tensor] == [64, 160, 320] and report.tensor[0]["shape"][2] == shape[1]
    assert report.passed and report.max_abs <= 1e-4, report.tensor
    assert report.metric_skipped


def test_parity_failure_writes_tensors(tmp_path: Path) -> None:
    cfg = load_config(ROOT / DET_CONFIGS["ppocrv3_student"])
    ckpt = det_checkpoint(tmp_path, cfg["Architecture"])
    result = export_onnx(cfg, tmp_path / "out", checkpoint=str(ckpt))
    with torch.no_grad():  # the eager model drifts from the exported graph
        result.exported.model.head.binarize.conv3.bias.add_(0.5)
    from ocr_core.export.parity import ParityError

    with pytest.raises(ParityError, match="tensor parity.*max abs"):
        check_parity(cfg, result.onnx_path, exported=result.exported, with_metric=False, shapes=[(1, 3, 64, 64)])
    saved = np.load(tmp_path / "out" / "parity_failure.npz")
    assert set(saved.files) == {"1x3x64x64_input", "1x3x64x64_eager", "1x3x64x64_onnx"}


@pytest.mark.parametrize("fmt", ["tensorrt", "both"])
def test_tensorrt_without_gpu_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    from ocr_core.export.tensorrt_build import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT and a GPU are available here")
    out = tmp_path / "trt"
    rc = main(["export", "-c", str(ROOT / DET_CONFIGS["ppocrv3_student"]), "--out", str(out), "--random",
               "--format", fmt])
    assert rc == 3
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"TensorRT needs an NVIDIA GPU; ONNX exported to {out / 'model.onnx'}"
    assert (out / "model.onnx").is_file()


# ----------------------------------------------------------------- official PP-OCRv3 weights

@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ocr_core.weights import ppocr_weights as pw

    try:
        wheel = pw.fetch_rapidocr_wheel()
    except pw.WeightsImportError as exc:
        pytest.skip(f"official PP-OCRv3 weights unavailable: {exc}")
    work = tmp_path_factory.mktemp("ppocrv3")
    out: dict[str, Path] = {}
    for kind in ("det", "rec"):
        rep = pw.import_ppocrv3(kind, work / f"ppocrv3_{kind}", wheel=wheel)
        out[kind] = rep.checkpoint
    return out


def write_text_image(path: Path, lines: list[str]) -> list[dict]:
    """Black words on white; returns the ground-truth word boxes (DetLabelEncode format)."""
    img = np.full((60 + 70 * len(lines), 520, 3), 255, np.uint8)
    labels = []
    for i, line in enumerate(lines):
        x = 25
        for word in line.split():
            (w, h), base = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, 1.4, 3)
            y = 70 + 70 * i
            cv2.putText(img, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
            labels.append({"transcription": word,
                           "points": [[x - 2, y - h - 3], [x + w + 2, y - h - 3], [x + w + 2, y + base], [x - 2, y + base]]})
            x += w + 45
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return labels


def test_det_metric_gate_official_weights(tmp_path: Path, official: dict[str, Path]) -> None:
    data = tmp_path / "eval"
    lines = []
    for i, text in enumerate([["HELLO WORLD"], ["OCRFLOW 2026", "TEXT"], ["EXPORT PARITY"]]):
        labels = write_text_image(data / "images" / f"{i}.png", text)
        lines.append(f"images/{i}.png\t{json.dumps(labels)}")
    (data / "label.txt").write_text("\n".join(lines) + "\n")
    cfg = load_config(ROOT / DET_CONFIGS["ppocrv3_student"], [
        f"Global.pretrained_model={official['det']}", "Global.use_gpu=false", f"Global.save_model_dir={tmp_path}",
        f"Eval.dataset.data_dir={data}", f"Eval.dataset.label_file_list=[{data / 'label.txt'}]",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 320, limit_type: max}",
        "Eval.loader.num_workers=0"])
    result = export_onnx(cfg, tmp_path / "det")
    report = check_parity(cfg, result.onnx_path, exported=result.exported)
    assert report.passed and report.metric_name == "hmean"
    assert report.eager_metric["hmean"] > 0.8  # the official weights find these words
    assert abs(report.eager_metric["hmean"] - report.onnx_metric["hmean"]) <= 0.005


def test_export_checked_reads_the_checkpoint_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export + tensor gate + eager and ONNX Eval metrics: the checkpoint is ``torch.load``-ed once (the
    eager side evaluates the weights in memory, no temporary checkpoint)."""
    from ocr_core.export.checked import export_checked

    data = tmp_path / "eval"
    labels = write_text_image(data / "images" / "0.png", ["HELLO WORLD"])
    (data / "label.txt").write_text(f"images/0.png\t{json.dumps(labels)}\n")
    cfg = load_config(ROOT / DET_CONFIGS["ppocrv3_student"], [
        "Global.use_gpu=false", f"Global.save_model_dir={tmp_path}", f"Eval.dataset.data_dir={data}",
        f"Eval.dataset.label_file_list=[{data / 'label.txt'}]", "Eval.loader.num_workers=0",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 160, limit_type: max}"])
    ckpt = det_checkpoint(tmp_path, cfg["Architecture"])
    loads: list[str] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(str(f)) or real_load(f, *a, **k))
    checked = export_checked(cfg, tmp_path / "out", checkpoint=str(ckpt))
    assert checked.parity is not None and checked.parity.passed
    assert checked.parity.eager_metric is not None and checked.parity.onnx_metric is not None
    assert loads == [str(ckpt)]


def test_text_system_official_weights(tmp_path: Path, official: dict[str, Path]) -> None:
    from ocr_core.inference.predictors import DetPredictor, RecPredictor, TextSystem
    from ocr_core.weights.checkpoint import load_checkpoint

    det_cfg = load_config(ROOT / DET_CONFIGS["ppocrv3_student"])
    export_onnx(det_cfg, tmp_path / "det", checkpoint=str(official["det"]))
    rec_cfg = load_checkpoint(official["rec"])["config"]
    export_onnx(rec_cfg, tmp_path / "rec", checkpoint=str(official["rec"]))
    write_text_image(tmp_path / "img.png", ["HELLO WORLD", "OCRFLOW 2026"])
    system = TextSystem(DetPredictor(tmp_path / "det"), RecPredictor(tmp_path / "rec"), drop_score=0.5)
    results = system(cv2.imread(str(tmp_path / "img.png")))
    tokens = [t.upper() for r in results for t in r["text"].split()]
    for word in ("HELLO", "WORLD", "OCRFLOW", "2026"):
        assert word in tokens, results
    ys = [min(p[1] for p in r["points"]) for r in results]
    assert ys == sorted(ys) or all(abs(a - b) < 10 or a < b for a, b in zip(ys, ys[1:]))
