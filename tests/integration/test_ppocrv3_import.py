"""``ocrflow weights import-ppocrv3``: official PP-OCRv3 weights from the rapidocr wheel.

Needs ``rapidocr-onnxruntime==1.2.13`` (pip download, cached in ``$OCRFLOW_CACHE`` or
``~/.cache/ocrflow``; ``OCRFLOW_RAPIDOCR_WHEEL`` for a local copy): skipped when unobtainable.
Parity is eager PyTorch (reloaded from the written checkpoint) vs onnxruntime on the wheel's ONNX.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ocr_core.cli import main as cli_main
from ocr_core.modeling import build_model
from ocr_core.weights import ppocr_weights
from ocr_core.weights.checkpoint import file_sha256, load_checkpoint
from ocr_core.weights.layer_match import LayerMatchError, canonical_order, load_matched
from ocr_core.weights.onnx_weights import read_onnx_layers
from ocr_core.weights.ppocr_weights import (
    WeightsImportError,
    extract_onnx,
    fetch_rapidocr_wheel,
    import_ppocrv3,
    ppocrv3_architecture,
)

ort = pytest.importorskip("onnxruntime")

THRESH = ["head.thresh.conv1", "head.thresh.conv_bn1", "head.thresh.conv2", "head.thresh.conv_bn2",
          "head.thresh.conv3"]


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return fetch_rapidocr_wheel()
    except WeightsImportError as exc:
        pytest.skip(f"rapidocr-onnxruntime==1.2.13 wheel unavailable (offline or pip failed): {exc}")


def _run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(list(argv))
    return rc, buf.getvalue()


def _reload(path: Path) -> tuple[torch.nn.Module, dict]:
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["architecture"]).eval()
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def _max_diff(model: torch.nn.Module, onnx_path: Path, shape: tuple[int, ...], key: str) -> float:
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ours = model(x)[key].numpy()
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max())


@pytest.fixture(scope="module")
def det(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("det") / "ppocrv3_det"
    rc, text = _run_cli("weights", "import-ppocrv3", "--kind", "det", "--out", str(out),
                        "--wheel", str(wheel))
    assert rc == 0
    return out.with_suffix(".pt"), text


def test_det_cli_report_and_provenance(det: tuple[Path, str], wheel: Path) -> None:
    path, text = det
    assert "matched 123/123 ONNX layers" in text
    assert "head.thresh.conv1" in text and "parity" in text
    _, ckpt = _reload(path)
    prov = ckpt["provenance"]
    assert prov["fresh_modules"] == THRESH  # the ONNX has only the binarize branch
    assert prov["layers_matched"] == 123
    assert prov["wheel"] == wheel.name and prov["wheel_sha256"] == file_sha256(wheel)
    assert prov["onnx_file"] == "ch_PP-OCRv3_det_infer.onnx"
    assert prov["onnx_sha256"] == file_sha256(extract_onnx(wheel, "det"))
    assert prov["license"] == "Apache-2.0" and "PP-OCRv3" in prov["upstream"]
    assert ckpt["model_type"] == "det" and ckpt["charset"] is None and ckpt["epoch"] == 0
    assert ckpt["config"]["Architecture"] == ckpt["architecture"]
    assert ckpt["architecture"]["Neck"] == {"name": "RSEFPN", "out_channels": 96, "shortcut": True}


@pytest.mark.parametrize("shape", [(1, 3, 640, 640), (1, 3, 320, 480)])
def test_det_parity_with_onnxruntime(det: tuple[Path, str], wheel: Path, shape: tuple[int, ...]) -> None:
    model, _ = _reload(det[0])
    diff = _max_diff(model, extract_onnx(wheel, "det"), shape, "maps")
    print(f"det {shape[2]}x{shape[3]}: max |torch - onnxruntime| = {diff:.3g}")
    assert diff <= 1e-5


def test_det_onnx_layers_and_param_count(wheel: Path) -> None:
    layers = read_onnx_layers(onnx.load(str(extract_onnx(wheel, "det"))))
    kinds = [lay.kind for lay in layers]
    assert (kinds.count("conv"), kinds.count("bn"), kinds.count("deconv")) == (72, 49, 2)
    # every Paddle-named weight constant of the graph belongs to a layer found by the walker
    model = onnx.load(str(extract_onnx(wheel, "det")))
    named = {n.output[0] for n in model.graph.node if n.op_type == "Constant" and "." in n.output[0]}
    assert {name for lay in layers for name in lay.names.values()} == named
    # trainable parameters = SPEC §1.2 student total 603,418 minus the absent threshold branch
    # (half of the 46,514-parameter DBHead)
    n = sum(a.size for lay in layers for r, a in lay.tensors.items() if not r.startswith("running"))
    assert n == 603_418 - 46_514 // 2 == 580_161


def test_wrong_architecture_names_first_mismatch(wheel: Path) -> None:
    arch = ppocrv3_architecture("det")
    arch["Neck"]["out_channels"] = 64
    layers = read_onnx_layers(onnx.load(str(extract_onnx(wheel, "det"))))
    with pytest.raises(LayerMatchError) as info:
        load_matched(build_model(arch).eval(), torch.zeros(1, 3, 64, 64), layers)
    msg = str(info.value)
    assert "'neck.ins_conv.0.in_conv'" in msg and "[64, 16, 1, 1]" in msg
    assert "conv2d_47.w_0 [96, 16, 1, 1]" in msg


def test_wrong_architecture_through_import(wheel: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    arch = ppocrv3_architecture("det")
    arch["Backbone"]["disable_se"] = False
    monkeypatch.setitem(ppocr_weights.CONFIG_FILES, "det", tmp_path / "absent.yml")
    monkeypatch.setattr(ppocr_weights, "ppocrv3_architecture", lambda kind: arch)
    with pytest.raises(WeightsImportError, match=r"mid_se\.conv1"):
        import_ppocrv3("det", tmp_path / "bad.pt", wheel=wheel)
    assert not (tmp_path / "bad.pt").exists()


def test_canonical_order_ignores_branch_scheduling() -> None:
    # a stem feeding two branches (1-2 and 3), merged by 4; scheduled two ways
    a = [frozenset(), frozenset({0}), frozenset({1}), frozenset({0}), frozenset({2, 3})]
    b = [frozenset(), frozenset({0}), frozenset({0}), frozenset({2}), frozenset({1, 3})]
    relabel = {0: 0, 1: 2, 2: 3, 3: 1, 4: 4}  # a's index -> b's index of the same layer
    assert [relabel[i] for i in canonical_order(a)] == canonical_order(b)


def test_fetch_wheel_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRFLOW_RAPIDOCR_WHEEL", str(tmp_path / "missing.whl"))
    with pytest.raises(WeightsImportError, match="OCRFLOW_RAPIDOCR_WHEEL"):
        fetch_rapidocr_wheel()
    monkeypatch.delenv("OCRFLOW_RAPIDOCR_WHEEL")

    def failing_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert cmd[1:4] == ["-m", "pip", "download"] and "rapidocr-onnxruntime==1.2.13" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(ppocr_weights.subprocess, "run", failing_pip)
    with pytest.raises(WeightsImportError, match=r"(?s)No matching distribution.*--wheel"):
        fetch_rapidocr_wheel(tmp_path / "cache")


def test_rec_import_parity_and_dictionary(wheel: Path, tmp_path: Path) -> None:
    pytest.importorskip("ocr_core.modeling.necks.rec_sequence_encoder")
    report = import_ppocrv3("rec", tmp_path / "ppocrv3_rec.pt", wheel=wheel)
    assert (report.layers_matched, report.layers_onnx) == (82, 82)
    assert report.fresh == []
    model, ckpt = _reload(report.checkpoint)
    diff = _max_diff(model, extract_onnx(wheel, "rec"), (1, 3, 48, 320), "ctc")  # softmax probs
    print(f"rec 48x320: max |torch - onnxruntime| = {diff:.3g}")
    assert diff <= 1e-5
    chars = (tmp_path / "ppocrv3_rec.dict.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(chars) == 6623 and len(set(chars)) == 6623
    assert ckpt["charset"] == [*chars, " "]
    assert model.head.fc.out_features == 6625 == 1 + len(chars) + 1  # blank + chars + space
    shipped = Path(ppocr_weights.DICTS_DIR) / "ppocr_keys_v1.txt"
    assert shipped.read_text(encoding="utf-8").split("\n")[:-1] == chars
    assert ckpt["provenance"]["onnx_file"] == "ch_PP-OCRv3_rec_infer.onnx"
