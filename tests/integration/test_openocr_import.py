"""OpenOCR RepViT DB (``configs/det/dbnet/repvit_db.yml``): import, parity, train/eval/export.

The parity test runs the real third-party implementation: OpenOCR's ``opendet`` from the
``openocr-python`` wheel (``make venv`` unpacks it with ``--no-deps`` into ``.venv/openocr-ref``,
outside our import path). A subprocess builds OpenOCR's ``repvit_db`` model with random weights and
randomised BatchNorm statistics, saves a checkpoint in OpenOCR's own layout (``state_dict`` with DDP
``module.`` prefixes, optimizer, config, metrics) and its outputs on a fixed input; we import the file
with ``ocrflow weights import-openocr`` and must reproduce those outputs (eval and train mode).
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ocr_core.cli import main as cli_main
from ocr_core.config import load_config, validate_config
from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import CheckpointError, load_checkpoint
from tests.integration.det_fixtures import ROOT, det_config, make_det_split

REPVIT_CFG = ROOT / "configs/det/dbnet/repvit_db.yml"


def _openocr_dir() -> Path | None:
    """The ``openocr`` package folder: installed in this interpreter, or unpacked by ``make venv``."""
    spec = importlib.util.find_spec("openocr")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    ref = Path(sys.prefix) / "openocr-ref" / "openocr"
    return ref if (ref / "opendet").is_dir() else None


OPENOCR_DIR = _openocr_dir()

# Runs in a separate interpreter: OpenOCR puts its own folder on sys.path and imports top-level
# names (``opendet``, ``tools``) that must not leak into the test process.
_BUILD_OPENOCR = r'''
import copy, os, sys
import torch, yaml
root, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
from opendet.modeling import build_model
cfg = yaml.safe_load(open(os.path.join(root, "configs/det/dbnet/repvit_db.yml")))
torch.manual_seed(1234)
model = build_model(copy.deepcopy(cfg["Architecture"]))
g = torch.Generator().manual_seed(5)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=g))
            m.bias.copy_(0.1 * torch.randn(n, generator=g))
state = {k: v.clone() for k, v in model.state_dict().items()}
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(2, 3, 96, 128, generator=g)
with torch.no_grad():
    model.eval()
    ev = model(x)["maps"]
    model.train()
    tr = model(x)["maps"]
torch.save({"epoch": 3, "global_step": 120, "state_dict": {"module." + k: v for k, v in state.items()},
            "optimizer": opt.state_dict(), "scheduler": None, "config": cfg, "metrics": {"hmean": 0.5}},
           os.path.join(out, "openocr_det_repvit_rand.pth"))
torch.save({"x": x, "eval": ev, "train": tr, "params": sum(p.numel() for p in model.parameters())},
           os.path.join(out, "io.pt"))
'''


def _model_from(ckpt_path: Path) -> torch.nn.Module:
    ckpt = load_checkpoint(ckpt_path)
    model = build_model(copy.deepcopy(ckpt["architecture"]))
    model.load_state_dict(ckpt["model"], strict=True)
    return model


@pytest.mark.skipif(OPENOCR_DIR is None, reason="openocr-python is not available: `make venv` unpacks "
                    "openocr-python==0.1.5 into .venv/openocr-ref (or pip install --no-deps openocr-python)")
def test_openocr_repvit_db_parity(tmp_path: Path) -> None:
    assert OPENOCR_DIR is not None
    subprocess.run([sys.executable, "-c", _BUILD_OPENOCR, str(OPENOCR_DIR), str(tmp_path)], check=True,
                   timeout=300)
    ref = torch.load(tmp_path / "io.pt", weights_only=True)
    out = tmp_path / "ours.pt"
    assert cli_main(["weights", "import-openocr", "--in", str(tmp_path / "openocr_det_repvit_rand.pth"),
                     "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["architecture"]["Neck"]["se_gate"] == "torch"
    model = _model_from(out)
    assert sum(p.numel() for p in model.parameters()) == ref["params"] == 3_127_722
    with torch.no_grad():
        model.eval()
        ev = model(ref["x"])["maps"]
        model.train()
        tr = model(ref["x"])["maps"]
    assert ev.shape == ref["eval"].shape == (2, 1, 96, 128)
    assert tr.shape == ref["train"].shape == (2, 3, 96, 128)
    assert (ev - ref["eval"]).abs().max().item() <= 1e-5
    # train mode normalises by the batch's own statistics, which amplifies float32 rounding of the
    # convolutions (kernel choice varies with load and thread count): 4e-5 was seen in a full run
    assert (tr - ref["train"]).abs().max().item() <= 2e-4

    # The SE gate matters: the same weights under Paddle's gate (slope 0.2) do not match OpenOCR.
    arch = copy.deepcopy(ckpt["architecture"])
    arch["Neck"]["se_gate"] = "paddle"
    paddle_gate = build_model(arch)
    paddle_gate.load_state_dict(ckpt["model"], strict=True)
    with torch.no_grad():
        paddle_gate.eval()
        assert (paddle_gate(ref["x"])["maps"] - ref["eval"]).abs().max().item() > 1e-3


def _our_model() -> torch.nn.Module:
    cfg = validate_config(load_config(REPVIT_CFG))
    torch.manual_seed(3)
    return build_model(copy.deepcopy(cfg["Architecture"]))


def test_import_openocr_layout_round_trip_and_strictness(tmp_path: Path) -> None:
    model = _our_model()
    state = model.state_dict()
    # OpenOCR's layout: DDP prefixes, training state beside the weights.
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": None,
                "config": {"Global": {"model_type": "det"}}}, tmp_path / "a.pth")
    assert cli_main(["weights", "import-openocr", "--in", str(tmp_path / "a.pth"), "--out",
                     str(tmp_path / "a.pt")]) == 0
    ckpt = load_checkpoint(tmp_path / "a.pt")
    assert ckpt["provenance"]["tool"] == "ocrflow weights import-openocr"
    assert ckpt["provenance"]["by_order"] == 0  # names map directly, nothing paired by order
    assert ckpt["provenance"]["matched"] == len(state) == 424
    for k, v in state.items():
        assert torch.equal(ckpt["model"][k], v), k

    # A missing tensor is refused (strict) and named.
    broken = {k: v for k, v in state.items() if k != "neck.ins_conv.0.in_conv.weight"}
    torch.save({"state_dict": broken}, tmp_path / "b.pth")
    from ocr_core.weights.openocr_import import import_openocr

    with pytest.raises(CheckpointError, match="neck.ins_conv.0.in_conv.weight|missing"):
        import_openocr(tmp_path / "b.pth", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()

    # A shape mismatch is refused and named.
    bad = dict(state)
    bad["head.binarize.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save({"state_dict": bad}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="head.binarize.conv1.weight|shape"):
        import_openocr(tmp_path / "c.pth", tmp_path / "c.pt")


def test_openocr_config_gets_openocr_gate_and_keeps_explicit_overrides() -> None:
    cfg = validate_config(load_config(REPVIT_CFG, ["Global.use_gpu=false"]))
    assert cfg["Architecture"]["Neck"]["se_gate"] == "torch"
    assert cfg["Global"]["use_gpu"] is False  # -o beats OpenOCR's `device: gpu`
    assert cfg["Optimizer"]["lr"]["name"] == "Cosine"
    paddle = validate_config(load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"))
    assert "se_gate" not in paddle["Architecture"]["Neck"]
    forced = validate_config(load_config(REPVIT_CFG, ["Architecture.Neck.se_gate=paddle"]))
    assert forced["Architecture"]["Neck"]["se_gate"] == "paddle"


def test_repvit_db_trains_evaluates_and_exports(tmp_path: Path) -> None:
    """OpenOCR's config, pointed at synthetic data: 2 epochs on CPU, eval, ONNX export parity."""
    from ocr_core.engine.run import train
    from ocr_core.export.onnx_export import export_onnx

    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    make_det_split(train_dir, num=8, seed=31, size=(256, 192))
    make_det_split(eval_dir, num=2, seed=32, size=(256, 192))
    cfg = det_config(train_dir, eval_dir, tmp_path / "out", "Global.device=cpu",
                     config="configs/det/dbnet/repvit_db.yml", crop=160, batch=4, epochs=2)
    out = train(cfg)
    assert out["global_step"] == 4
    assert {"precision", "recall", "hmean"} <= set(out["best_metric"])
    latest = load_checkpoint(tmp_path / "out" / "latest.pt")
    assert latest["architecture"]["Backbone"]["name"] == "RepSVTR_det"
    assert latest["architecture"]["Neck"]["se_gate"] == "torch"

    result = export_onnx(cfg, tmp_path / "export", checkpoint=str(tmp_path / "out" / "latest.pt"))
    import onnxruntime as ort

    model = _model_from(tmp_path / "out" / "latest.pt").eval()
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)["maps"].numpy()
    sess = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)
