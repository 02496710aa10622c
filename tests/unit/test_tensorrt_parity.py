"""The TensorRT gate (engine vs onnxruntime) and ``export_checked``'s formats, with a fake
``tensorrt`` that runs the ONNX bytes on host memory (tests/unit/fake_tensorrt.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ocr_core.errors import ConfigError
from ocr_core.export import tensorrt_build as trtb
from ocr_core.export import tensorrt_parity as trtp
from ocr_core.export.checked import check_format, export_checked, needs_tensorrt
from ocr_core.export.onnx_export import export_onnx
from ocr_core.export.parity import ParityError
from tests.unit.fake_tensorrt import FakeTensorRT, install

TINY_DET = {"model_type": "det", "algorithm": "DB",
            "Backbone": {"name": "MobileNetV3", "scale": 0.35, "model_name": "small", "disable_se": True},
            "Neck": {"name": "DBFPN", "out_channels": 16}, "Head": {"name": "DBHead", "k": 50}}


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cfg = {"Global": {}, "Architecture": dict(TINY_DET)}
    return cfg, export_onnx(cfg, tmp_path_factory.mktemp("det")).onnx_path


def engine(onnx_path: Path, out: Path, fake: FakeTensorRT, batch: tuple[int, int, int] = (1, 1, 4)) -> Path:
    profiles = trtb.profile_shapes(trtb.md.read_metadata(onnx_path), batch=batch)
    return trtb.build_engine(onnx_path, out / "model.engine", profiles, trt=fake)


def test_session_runs_the_engine_like_onnxruntime_in_profile_sized_chunks(det: tuple, tmp_path: Path) -> None:
    import onnxruntime as ort

    _, onnx_path = det
    fake = FakeTensorRT()
    sess = trtp.TensorRTSession(engine(onnx_path, tmp_path, fake, batch=(1, 1, 2)), trt=fake, device="cpu")
    assert [i.name for i in sess.get_inputs()] == ["x"] and [o.name for o in sess.get_outputs()] == ["maps"]
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 96)).astype(np.float32)
    want = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = sess.run(None, {"x": x})[0]
    assert got.shape == want.shape == (5, 1, 64, 96)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert sess.context.batches == [2, 2, 1]  # the profile's max batch is 2
    with pytest.raises(trtb.OCRFlowError, match=r"input x 1x3x64x1024 is outside the engine's profile "
                       r"1x3x32x32\.\.2x3x960x960 \(ocrflow export --max-side widens it\)"):
        sess.run(None, {"x": np.zeros((1, 3, 64, 1024), np.float32)})


def test_profiles_merge_to_cover_both() -> None:
    deploy = {"x": ((1, 3, 32, 32), (1, 3, 960, 960), (4, 3, 960, 960))}
    other = {"x": ((1, 3, 64, 16), (1, 3, 736, 1312), (8, 3, 2048, 2048))}
    assert trtb.merge_profiles(deploy, other) == {"x": ((1, 3, 32, 16), (1, 3, 960, 960), (8, 3, 2048, 2048))}


def test_gate_passes_an_engine_that_reproduces_onnx(det: tuple, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, onnx_path = det
    fake = install(monkeypatch)
    report = trtp.check_tensorrt_parity(cfg, onnx_path, engine(onnx_path, tmp_path, fake))
    assert report.passed and report.max_abs <= 1e-6
    assert [t["shape"] for t in report.tensor] == [[1, 3, 64, 96], [2, 3, 128, 128], [1, 3, 96, 160]]
    assert report.metric_skipped == "no Eval/Metric section"
    assert not (tmp_path / "tensorrt_parity_failure.npz").exists()


def test_gate_fails_on_drift_and_writes_the_tensors(det: tuple, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, onnx_path = det
    fake = install(monkeypatch, drift=0.05)
    with pytest.raises(ParityError,
                       match=r"TensorRT parity check failed: tensor parity: 1x3x64x96 max abs 0\.05 > 0\.01"):
        trtp.check_tensorrt_parity(cfg, onnx_path, engine(onnx_path, tmp_path, fake), out_dir=tmp_path / "o")
    saved = np.load(tmp_path / "o" / "tensorrt_parity_failure.npz")
    assert {"1x3x64x96_input", "1x3x64x96_onnx", "1x3x64x96_tensorrt"} <= set(saved.files)
    np.testing.assert_allclose(saved["1x3x64x96_tensorrt"] - saved["1x3x64x96_onnx"], 0.05, atol=1e-6)
    # a looser tolerance accepts the same engine
    assert trtp.check_tensorrt_parity(cfg, onnx_path, tmp_path / "model.engine", atol=0.1).passed


def test_gate_compares_the_eval_metric(det: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(b): the predictor path with the engine in place of onnxruntime against the ONNX metric."""
    cfg, onnx_path = det
    fake = install(monkeypatch)
    eng = engine(onnx_path, tmp_path, fake)
    seen: list[Any] = []

    def fake_metric(plain: dict, path: Any, limit: Any = None, session: Any = None) -> dict[str, float]:
        seen.append(session)
        return {"hmean": 0.80} if session is None else {"hmean": tensorrt_hmean}

    monkeypatch.setattr(trtp, "onnx_metric", fake_metric)
    with_eval = {**cfg, "Eval": {"dataset": {}}, "Metric": {"name": "DetMetric", "main_indicator": "hmean"}}
    tensorrt_hmean = 0.797  # 0.3 points: within 0.5
    report = trtp.check_tensorrt_parity(with_eval, onnx_path, eng)
    assert report.passed and report.metric_name == "hmean" and report.tensorrt_metric == {"hmean": 0.797}
    assert seen[0] is None and isinstance(seen[1], trtp.TensorRTSession)
    tensorrt_hmean = 0.78
    with pytest.raises(ParityError, match=r"metric parity: onnx hmean 0\.8000 vs tensorrt 0\.7800 \(differ by 2\.00"):
        trtp.check_tensorrt_parity(with_eval, onnx_path, eng)
    seen.clear()  # the ONNX gate's metric is reused, not measured again
    report = trtp.check_tensorrt_parity(with_eval, onnx_path, eng, onnx_reference={"hmean": 0.78})
    assert report.passed and len(seen) == 1
    skipped = trtp.check_tensorrt_parity(with_eval, onnx_path, eng, skip_metric="no checkpoint (random weights)")
    assert skipped.metric_skipped == "no checkpoint (random weights)" and skipped.tensorrt_metric is None


def test_export_checked_formats(det: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = det
    assert [needs_tensorrt(f) for f in ("onnx", "tensorrt", "both")] == [False, True, True]
    with pytest.raises(ConfigError, match="export format must be one of onnx, tensorrt, both; got 'tflite'") as err:
        check_format("tflite", "export_format")
    assert err.value.key_path == "export_format" and str(err.value).startswith("export_format: ")
    with pytest.raises(ConfigError):
        export_checked(cfg, tmp_path / "bad", fmt="tflite")
    assert not (tmp_path / "bad").exists()  # rejected before anything is written
    fake = install(monkeypatch)
    # random weights (seeded): DB logits in the hundreds put float32 noise near 1e-4, hence atol 1e-3
    torch.manual_seed(0)
    checked = export_checked(cfg, tmp_path / "trt", fmt="both", atol=1e-3)
    assert checked.engine == tmp_path / "trt" / "model.engine" and checked.engine.is_file()
    assert checked.parity is not None and checked.parity.passed
    assert checked.tensorrt_parity is not None and checked.tensorrt_parity.passed
    assert checked.tensorrt_parity.metric_skipped == checked.parity.metric_skipped
    (_, header), = fake.calls
    assert header["flags"] == ["FP16"] and header["profile"]["x"][2] == [4, 3, 960, 960]  # the embedded 960/max
    torch.manual_seed(0)
    plain = export_checked(cfg, tmp_path / "onnx", atol=1e-3)
    assert plain.engine is None and not (tmp_path / "onnx" / "model.engine").exists()
    # with an Eval set the profile also covers its resize (here DetResizeForTest's default, 736 min, long
    # side up to 2048) while the deployed 960/max stays the opt shape
    fake.calls.clear()
    with_eval = {**cfg, "Eval": {"dataset": {"transforms": [{"DetResizeForTest": None}]}}}
    export_checked(with_eval, tmp_path / "eval", fmt="tensorrt", check=False)
    (_, header), = fake.calls
    assert header["profile"]["x"] == [[1, 3, 32, 32], [1, 3, 960, 960], [4, 3, 2048, 2048]]


def test_unavailable_tensorrt_messages(det: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = det
    monkeypatch.setattr(trtb, "tensorrt_available", lambda: (False, "no CUDA device"))
    with pytest.raises(trtb.TensorRTUnavailable) as err:
        trtb.require_tensorrt()
    assert str(err.value) == ("TensorRT needs an NVIDIA GPU and the tensorrt module (no CUDA device); nothing was "
                              "exported: run the export on the TensorRT image with a GPU, or export ONNX only")
    assert "\n" not in str(err.value) and err.value.onnx_path is None
    with pytest.raises(trtb.TensorRTUnavailable, match="ONNX exported to"):
        export_checked(cfg, tmp_path / "x", fmt="tensorrt", check=False)
