"""#18 item 3: OpenOCR's commands as its guides print them.

- ``tools/infer_det.py --c CFG --o Global.backend=onnx Global.onnx_model_path=M`` -> ``ocrflow infer``
  runs the ONNX model (ours, or a foreign one set up from the config);
- ``python -m torch.distributed.launch`` appends ``--local-rank=N`` / ``--local_rank N``;
- ``repvit_db.yml``'s ``pretrained_model`` takes OpenOCR's DDP-prefixed ``.pth`` as is;
- RepViT's structural re-parameterisation is applied at export; parity with the unfused model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from ocr_core.cli import main as cli_main
from ocr_core.commands._common import add_config_arguments, config_from_args
from ocr_core.config import load_config, validate_config
from ocr_core.engine.resume import load_for_run
from ocr_core.engine.run import prepare
from ocr_core.export.onnx_export import deploy_model, export_onnx, op_counts, to_onnx
from ocr_core.modeling import build_model
from ocr_core.modeling.backbones.det_repvit import Conv2D_BN, RepVGGDW
from ocr_core.weights.checkpoint import save_checkpoint
from tests.integration.det_fixtures import make_det_split
from tests.integration.test_openocr_import import _BUILD_OPENOCR, OPENOCR_DIR

ROOT = Path(__file__).resolve().parents[2]
REPVIT = ROOT / "configs/det/dbnet/repvit_db.yml"
STUDENT = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"


def _randomise_bn(model: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def _repvit_model() -> torch.nn.Module:
    torch.manual_seed(11)
    return _randomise_bn(build_model(copy.deepcopy(validate_config(load_config(REPVIT))["Architecture"])))


def test_local_rank_flags_from_torch_distributed_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert parser.parse_args(["--c", "x.yml", "--local-rank=3"]).local_rank == 3
    args = parser.parse_args(["--local_rank", "2", "--c", str(STUDENT), "--o", "Global.use_gpu=false"])
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    config_from_args(args)
    assert os.environ["LOCAL_RANK"] == "2"


def test_reparameterised_export_matches_the_unfused_model() -> None:
    model = _repvit_model().eval()
    model.export_mode = True
    fused = deploy_model(model)
    assert fused is not model
    n_dw = sum(isinstance(m, RepVGGDW) for m in model.modules())
    assert n_dw == 10 and not any(isinstance(m, (RepVGGDW, Conv2D_BN)) for m in fused.modules())
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)  # export mode: the raw probability map
        got = fused(x)
    assert (got - want).abs().max().item() <= 1e-5
    plain, deploy = to_onnx(model, "det"), to_onnx(fused, "det")
    # each RepVGGDW's 1x1 branch and its two Adds disappear into the 3x3 depthwise conv
    assert op_counts(plain)["Conv"] - op_counts(deploy)["Conv"] == n_dw
    assert op_counts(plain)["Add"] - op_counts(deploy)["Add"] == 2 * n_dw
    import onnxruntime as ort

    sess = ort.InferenceSession(deploy.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(out, want.numpy(), atol=1e-4)


def test_openocr_ddp_pth_loads_as_pretrained_model(tmp_path: Path) -> None:
    make_det_split(tmp_path / "d", 2, seed=4, size=(128, 128))
    state = _repvit_model().state_dict()
    pth = tmp_path / "openocr_det_repvit_ch.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": None}, pth)
    data = [f"Train.dataset.data_dir={tmp_path / 'd'}", f"Train.dataset.label_file_list=[{tmp_path / 'd' / 'label.txt'}]",
            "Train.loader.num_workers=0", "Global.device=cpu", f"Global.save_model_dir={tmp_path / 'o'}",
            "Eval.loader.num_workers=0", f"Eval.dataset.data_dir={tmp_path / 'd'}",
            f"Eval.dataset.label_file_list=[{tmp_path / 'd' / 'label.txt'}]"]
    run = prepare(load_config(str(REPVIT), [*data, f"Global.pretrained_model={pth}", "Global.pretrained_strict=true"]),
                  "train")
    load_for_run(run)
    loaded = run.model.state_dict()
    assert len(state) == 424
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


@pytest.mark.skipif(OPENOCR_DIR is None, reason="openocr-python is not available (make venv unpacks it)")
def test_real_openocr_pth_direct_and_exported_fused(tmp_path: Path) -> None:
    """OpenOCR's own model, saved by OpenOCR's layout, as Global.pretrained_model; exported fused."""
    subprocess.run([sys.executable, "-c", _BUILD_OPENOCR, str(OPENOCR_DIR), str(tmp_path)], check=True, timeout=300)
    ref = torch.load(tmp_path / "io.pt", weights_only=True)
    cfg = validate_config(load_config(str(REPVIT), ["Global.device=cpu",
                                                    f"Global.pretrained_model={tmp_path / 'openocr_det_repvit_rand.pth'}"]))
    result = export_onnx(cfg, tmp_path / "exp")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: ref["x"].numpy()})[0]
    np.testing.assert_allclose(got, ref["eval"].numpy(), atol=1e-4)  # OpenOCR's own eval output
    assert result.op_counts["Conv"] < sum(isinstance(m, torch.nn.Conv2d) for m in result.exported.model.modules())


def test_infer_backend_onnx(tmp_path: Path) -> None:
    cfg = load_config(str(STUDENT))
    torch.manual_seed(0)
    model = build_model(cfg["Architecture"])
    state = model.state_dict()
    state["head.binarize.conv3.weight"].zero_()
    state["head.binarize.conv3.bias"].fill_(20.0)  # every pixel is text: one box, the whole image
    ck = save_checkpoint(tmp_path / "all.pt", {"model": state, "architecture": cfg["Architecture"],
                                               "model_type": "det", "config": cfg})
    export_onnx(validate_config(load_config(str(STUDENT))), tmp_path / "exp", checkpoint=str(ck))
    foreign = onnx.load(str(tmp_path / "exp" / "model.onnx"))
    del foreign.metadata_props[:]  # like OpenOCR's openocr_det_model.onnx: no OCRFlow settings
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.full((60, 100, 3), 200, np.uint8))
    for name, model_path in (("ours", tmp_path / "exp" / "model.onnx"), ("foreign", tmp_path / "foreign.onnx")):
        out = tmp_path / name
        assert cli_main(["infer", "--c", str(STUDENT), "--o", "Global.backend=onnx",
                         f"Global.onnx_model_path={model_path}", f"Global.save_res_path={out / 'predicts_db.txt'}",
                         "--image", str(tmp_path / "imgs")]) == 0
        image, boxes = (out / "predicts_db.txt").read_text().strip().split("\t")
        assert image == str(tmp_path / "imgs" / "a.png")
        # predict_det's filter clips the whole-image box to the last pixel
        assert json.loads(boxes) == [{"points": [[0.0, 0.0], [99.0, 0.0], [99.0, 59.0], [0.0, 59.0]]}]
        assert (out / "det_res_a.png").is_file() and (out / "predicts.json").is_file()
    assert cli_main(["infer", "--c", str(STUDENT), "--o", "Global.backend=paddle"]) == 2
