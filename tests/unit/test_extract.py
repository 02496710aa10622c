"""``ocrflow extract``: one role of a distillation checkpoint as a plain checkpoint.

The CML config is used with a small teacher (ResNet_vd 18 + LKPAN 64 instead of 50 + 256) so
the test stays fast; extraction does not depend on the sizes.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from ocr_core.cli import main as cli_main
from ocr_core.config import load_config, public_config, validate_config
from ocr_core.engine.extract import extract_role, plain_config, role_metrics
from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CML = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml"
DML = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_dml.yml"
SMALL_TEACHER = ["Architecture.Models.Teacher.Backbone.layers=18", "Architecture.Models.Teacher.Neck.out_channels=64"]
BEST = {"precision": 0.5, "recall": 0.25, "hmean": 1 / 3, "fps": 9.0,
        "Student2_precision": 1.0, "Student2_recall": 0.5, "Student2_hmean": 2 / 3, "Student2_fps": 9.0,
        "Teacher_hmean": 0.9, "Student2_best_hmean": 0.7, "best_epoch": 3, "best_step": 12}


@pytest.fixture(scope="module")
def cml_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, torch.nn.Module]:
    cfg = load_config(CML, SMALL_TEACHER)
    validate_config(cfg)
    torch.manual_seed(0)
    model = build_model(cfg["Architecture"])
    # make every role distinguishable, BN buffers included
    with torch.no_grad():
        for i, t in enumerate(model.state_dict().values()):
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.01 * (1 + i % 3))
    path = tmp_path_factory.mktemp("cml") / "best_accuracy.pt"
    save_checkpoint(path, {"model": model.state_dict(), "architecture": cfg["Architecture"], "model_type": "det",
                           "config": public_config(cfg), "charset": None, "epoch": 3, "global_step": 12,
                           "best_metric": dict(BEST), "provenance": {"tool": "test"}})
    return path, cfg, model.eval()


def test_role_metrics_unprefix_the_role_and_drop_running_bests() -> None:
    roles = ["Student", "Student2", "Teacher"]
    assert role_metrics(BEST, "Student", roles, "Student") == {
        "precision": 0.5, "recall": 0.25, "hmean": 1 / 3, "fps": 9.0, "best_epoch": 3, "best_step": 12}
    assert role_metrics(BEST, "Student2", roles, "Student") == {
        "precision": 1.0, "recall": 0.5, "hmean": 2 / 3, "fps": 9.0, "best_epoch": 3, "best_step": 12}
    assert role_metrics(BEST, "Teacher", roles, "Student") == {"hmean": 0.9, "best_epoch": 3, "best_step": 12}
    assert role_metrics({"hmean": 0.1}, "Student2", roles, "Student") == {}


def test_plain_config_rewrites_the_distillation_sections() -> None:
    cfg = load_config(CML, SMALL_TEACHER + ["Architecture.Models.Student.pretrained=x.pt"])
    student = cfg["Architecture"]["Models"]["Student"]
    arch = {k: v for k, v in student.items() if k not in ("pretrained", "freeze_params")}
    plain = plain_config(cfg, "Student", arch)
    assert plain["Architecture"] == arch and "pretrained" not in plain["Architecture"]
    assert plain["Loss"] == {"name": "DBLoss", "balance_loss": True, "main_loss_type": "DiceLoss", "alpha": 5,
                             "beta": 10, "ohem_ratio": 3}
    assert plain["PostProcess"] == {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6,
                                    "max_candidates": 1000, "unclip_ratio": 1.5}
    assert plain["Metric"] == {"name": "DetMetric", "main_indicator": "hmean"}
    assert plain["Train"] == cfg["Train"] and plain["Optimizer"] == cfg["Optimizer"]
    assert "_config_file" not in plain["Global"]
    validate_config(plain)
    # the student config's sections are exactly what CML rewrites to (PaddleOCR's recipe)
    student_cfg = load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")
    for sec in ("Architecture", "Loss", "PostProcess", "Metric"):
        assert plain[sec] == student_cfg[sec], sec
    dml = load_config(DML)
    teacher = plain_config(dml, "Student", dml["Architecture"]["Models"]["Student"])
    assert teacher["Loss"]["name"] == "DBLoss" and teacher["Architecture"]["Backbone"]["layers"] == 50
    validate_config(teacher)


@pytest.mark.parametrize("role", ["Student", "Student2", "Teacher"])
def test_extract_role_loads_strictly_and_matches_the_distilled_output(
        cml_ckpt: tuple[Path, dict, torch.nn.Module], tmp_path: Path, role: str) -> None:
    src, cfg, distilled = cml_ckpt
    res = extract_role(src, role, tmp_path / f"{role}", evaluate=False)
    assert res.path == tmp_path / f"{role}.pt" and res.roles == ["Student", "Student2", "Teacher"]
    ck = load_checkpoint(res.path)
    assert {"format", "model", "architecture", "model_type", "config", "charset", "epoch", "global_step",
            "best_metric", "provenance"} <= set(ck)
    assert "freeze_params" not in ck["architecture"] and "pretrained" not in ck["architecture"]
    assert ck["config"]["Architecture"] == ck["architecture"]
    assert (ck["epoch"], ck["global_step"], ck["model_type"]) == (3, 12, "det")
    assert ck["provenance"]["role"] == role and ck["provenance"]["sha256"] == file_sha256(src)
    assert ck["provenance"]["extracted_from"] == str(src)
    plain = build_model(ck["architecture"]).eval()
    plain.load_state_dict(ck["model"], strict=True)  # torch's own strict check
    source = load_checkpoint(src)["model"]
    for k, v in ck["model"].items():
        assert torch.equal(v, source[f"{role}.{k}"]), k
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(plain(x)["maps"], distilled(x)[role]["maps"])
    expected = {"Student": {"hmean": 1 / 3, "precision": 0.5, "recall": 0.25, "fps": 9.0},
                "Student2": {"hmean": 2 / 3, "precision": 1.0, "recall": 0.5, "fps": 9.0},
                "Teacher": {"hmean": 0.9}}[role]
    assert ck["best_metric"] == {**expected, "best_epoch": 3, "best_step": 12}
    validate_config(ck["config"])


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_missing_role_fails_and_lists_the_roles(cml_ckpt: tuple[Path, dict, torch.nn.Module], tmp_path: Path) -> None:
    src, _, _ = cml_ckpt
    with pytest.raises(CheckpointError, match="roles present: Student, Student2, Teacher"):
        extract_role(src, "student", tmp_path / "x.pt", evaluate=False)
    rc, _, err = _cli("extract", "--role", "Student3", "--in", str(src), "--out", str(tmp_path / "y.pt"),
                      "--no-eval")
    assert rc == 2 and "'Student3'" in err and "Student, Student2, Teacher" in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_cli_no_eval_prints_the_recorded_metric(cml_ckpt: tuple[Path, dict, torch.nn.Module], tmp_path: Path) -> None:
    src, _, _ = cml_ckpt
    rc, out, _ = _cli("extract", "--role", "Student2", "--in", str(src.with_suffix("")), "--out",
                      str(tmp_path / "s2"), "--no-eval")
    assert rc == 0, out
    assert "extracted Student2" in out and "hmean recorded in training: 0.6667 at step 12" in out
    assert (tmp_path / "s2.pt").is_file()


def test_plain_checkpoint_is_not_a_distillation_checkpoint(tmp_path: Path) -> None:
    arch = load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml")["Architecture"]
    path = save_checkpoint(tmp_path / "plain.pt", {"model": build_model(arch).state_dict(), "architecture": arch})
    with pytest.raises(CheckpointError, match="not a distillation checkpoint.*backbone"):
        extract_role(path, "Student", tmp_path / "out.pt", evaluate=False)
