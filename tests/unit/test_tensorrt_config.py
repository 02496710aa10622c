"""TensorRT profile derivation and engine-build calls, without a GPU (a fake ``tensorrt``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ocr_core.export import tensorrt_build as trtb
from ocr_core.inference import metadata as md


def det_meta(**resize) -> dict:
    meta = md.build_metadata({}, "det", "DB", "a", "b")
    # an empty config now embeds the deploy 960/max (#18 item 4); these tests start from no setting
    meta["ocrflow.resize"].update({"limit_side_len": None, "limit_type": None}, **resize)
    return meta


def test_det_profile_default_min_736() -> None:
    (name, (lo, opt, hi)), = trtb.profile_shapes(det_meta()).items()
    assert name == "x"
    assert lo == (1, 3, 32, 32) and opt == (1, 3, 736, 1312) and hi == (4, 3, 2048, 2048)


def test_det_profile_fixed_and_keep_ratio_and_max() -> None:
    fixed = trtb.profile_shapes(det_meta(image_shape=[736, 1280]), batch=(1, 2, 8))["x"]
    assert fixed == ((1, 3, 736, 1280), (2, 3, 736, 1280), (8, 3, 736, 1280))
    keep = trtb.profile_shapes(det_meta(image_shape=[640, 640], keep_ratio=True), max_side=1600)["x"]
    assert keep == ((1, 3, 640, 32), (1, 3, 640, 640), (4, 3, 640, 1600))
    small = trtb.profile_shapes(det_meta(limit_side_len=960, limit_type="max"))["x"]
    assert small == ((1, 3, 32, 32), (1, 3, 960, 960), (4, 3, 960, 960))
    long = trtb.profile_shapes(det_meta(resize_long=900))["x"]
    assert long == ((1, 3, 128, 128), (1, 3, 1024, 1024), (4, 3, 1024, 1024))


def test_rec_profile_dynamic_width() -> None:
    cfg = {"Eval": {"dataset": {"transforms": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]}}}
    meta = md.build_metadata(cfg, "rec", "SVTR_LCNet", "a", "b", character=["a"], io_names=("x", "probs"))
    assert trtb.profile_shapes(meta)["x"] == ((1, 3, 48, 32), (6, 3, 48, 320), (16, 3, 48, 1280))
    assert trtb.profile_shapes(meta, rec_max_width=2304)["x"][2] == (16, 3, 48, 2304)


class FakeTRT:
    """Records the TensorRT API calls build_engine makes."""

    def __init__(self, parse_ok: bool = True) -> None:
        self.calls: list[tuple] = []
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                fake.calls.append(("Logger", level))

        class Profile:
            def set_shape(self, name, lo, opt, hi) -> None:  # noqa: ANN001
                fake.calls.append(("set_shape", name, lo, opt, hi))

        class Config:
            def set_memory_pool_limit(self, pool, size) -> None:  # noqa: ANN001
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag) -> None:  # noqa: ANN001
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, profile) -> None:  # noqa: ANN001
                fake.calls.append(("add_profile", isinstance(profile, Profile)))

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger) -> None:  # noqa: ANN001
                pass

            def create_network(self, flags: int) -> str:
                fake.calls.append(("network", flags))
                return "network"

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network, config) -> bytes:  # noqa: ANN001
                fake.calls.append(("build", network))
                return b"ENGINE"

        class OnnxParser:
            num_errors = 1

            def __init__(self, network, logger) -> None:  # noqa: ANN001
                pass

            def parse(self, data: bytes) -> bool:
                fake.calls.append(("parse", len(data)))
                return parse_ok

            def get_error(self, i: int) -> str:
                return "unsupported op Foo"

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = SimpleNamespace(FP16="FP16")


def test_build_engine_calls(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"0123456789")
    fake = FakeTRT()
    profiles = {"x": ((1, 3, 32, 32), (1, 3, 736, 1312), (4, 3, 2048, 2048))}
    out = trtb.build_engine(onnx_file, tmp_path / "e" / "model.engine", profiles, fp16=True,
                            workspace_bytes=1 << 30, trt=fake)
    assert out.read_bytes() == b"ENGINE"
    assert ("parse", 10) in fake.calls and ("network", 1) in fake.calls
    assert ("set_shape", "x", (1, 3, 32, 32), (1, 3, 736, 1312), (4, 3, 2048, 2048)) in fake.calls
    assert ("flag", "FP16") in fake.calls and ("pool", "WORKSPACE", 1 << 30) in fake.calls
    assert fake.calls.index(("add_profile", True)) < fake.calls.index(("build", "network"))
    fake32 = FakeTRT()
    trtb.build_engine(onnx_file, tmp_path / "fp32.engine", profiles, fp16=False, trt=fake32)
    assert not any(c[0] == "flag" for c in fake32.calls)
    with pytest.raises(trtb.OCRFlowError, match="unsupported op Foo"):
        trtb.build_engine(onnx_file, tmp_path / "bad.engine", profiles, trt=FakeTRT(parse_ok=False))


def test_unavailable_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trtb, "tensorrt_available", lambda: (False, "no GPU"))
    with pytest.raises(trtb.TensorRTUnavailable) as err:
        trtb.build_from_onnx(tmp_path / "model.onnx")
    assert str(err.value) == f"TensorRT needs an NVIDIA GPU; ONNX exported to {tmp_path / 'model.onnx'}"
    assert trtb.EXIT_NO_TENSORRT == 3
