"""#18 item 6: keys the guides print either work or are refused with the reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ocr_core.config import load_config, validate_config
from ocr_core.config.guide_keys import save_epoch_due
from ocr_core.engine.optim import build_optimizer
from ocr_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"
REC = ROOT / "configs/rec/PP-OCRv3/en_PP-OCRv3_rec.yml"


def _validate(config: Path, *opts: str) -> dict:
    return validate_config(load_config(str(config), list(opts)))


def test_base_lr_errors_with_the_key_to_use() -> None:
    with pytest.raises(ConfigError) as err:
        _validate(STUDENT, "Optimizer.base_lr=0.0001")
    msg = str(err.value)
    assert "Optimizer.base_lr" in msg and "-o Optimizer.lr.learning_rate=0.0001" in msg


def test_piecewise_mismatch_is_a_validation_error() -> None:
    with pytest.raises(ConfigError, match=r"2 decay_epochs, 2 values \(expected 3\)"):
        _validate(STUDENT, "Optimizer.lr={name: Piecewise, decay_epochs: [10, 20], values: [0.1, 0.01]}")
    _validate(STUDENT, "Optimizer.lr={name: Piecewise, decay_epochs: [10, 20], values: [0.1, 0.01, 0.001]}")


def test_save_epoch_step_int_and_openocr_start_step() -> None:
    assert [e for e in range(1, 13) if save_epoch_due(3, e)] == [3, 6, 9, 12]
    # OpenOCR's repvit_db.yml [400, 25]: after epoch 400, every 25th
    assert [e for e in range(395, 480) if save_epoch_due([400, 25], e)] == [425, 450, 475]
    assert [e for e in range(1, 4) if save_epoch_due([0, 1], e)] == [1, 2, 3]
    assert not any(save_epoch_due(0, e) for e in range(1, 5))
    cfg = _validate(ROOT / "configs/det/dbnet/repvit_db.yml")
    assert cfg["Global"]["save_epoch_step"] == [400, 25]  # kept, no longer collapsed to 25
    with pytest.raises(ConfigError, match="save_epoch_step"):
        _validate(STUDENT, "Global.save_epoch_step=[1, 2, 3]")


def test_amp_level(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="amp_level"):
        _validate(STUDENT, "Global.amp_level=O3")
    with caplog.at_level(logging.WARNING, logger="ocrflow"):
        _validate(STUDENT, "Global.amp_level=O2", "Global.use_amp=true")
    assert "O2 runs as O1" in caplog.text


def test_cal_metric_during_train_refused_for_det_only() -> None:
    with pytest.raises(ConfigError, match="target maps, not polygons"):
        _validate(STUDENT, "Global.cal_metric_during_train=true")
    _validate(REC, "Global.cal_metric_during_train=true")


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.norm = nn.BatchNorm1d(2)
        self.pos_embed = nn.Parameter(torch.ones(1, 2))


def _decayed(opt_cfg: dict) -> dict[str, bool]:
    """One SGD step (lr 1, zero gradients): coupled L2 0.5 halves decayed parameters."""
    model = _Tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    optimizer, _ = build_optimizer({"name": "SGD", "lr": {"learning_rate": 1.0},
                                    "regularizer": {"name": "L2", "factor": 0.5}, **opt_cfg}, model, 1, 1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {n: bool(torch.allclose(p, torch.full_like(p, 0.5))) for n, p in model.named_parameters()}


def test_no_weight_decay_name_and_one_dim_params() -> None:
    assert all(_decayed({}).values())
    named = _decayed({"no_weight_decay_name": "norm pos_embed"})
    assert named == {"fc.weight": True, "fc.bias": True, "norm.weight": False, "norm.bias": False,
                     "pos_embed": False}
    one_dim = _decayed({"one_dim_param_no_weight_decay": True})
    assert one_dim == {"fc.weight": True, "fc.bias": False, "norm.weight": False, "norm.bias": False,
                       "pos_embed": True}
    # OpenOCR's filter_bias_and_bn is that key
    cfg = _validate(ROOT / "configs/det/dbnet/repvit_db.yml", "Optimizer.filter_bias_and_bn=true")
    assert cfg["Optimizer"]["one_dim_param_no_weight_decay"] is True


def test_total_epoch_follows_the_training_epoch(tmp_path: Path) -> None:
    from ocr_core.data.simple_dataset import SimpleDataSet

    img = np.full((60, 80, 3), 255, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    box = [{"transcription": "x", "points": [[20, 20], [60, 20], [60, 40], [20, 40]]}]  # 40 x 20
    (tmp_path / "l.txt").write_text(f"a.png\t{json.dumps(box)}\n", encoding="utf-8")
    ops = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"DetLabelEncode": None},
           {"MakeBorderMap": {"shrink_ratio": 0.4, "total_epoch": 10}},
           {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8, "total_epoch": 10}},
           {"KeepKeys": {"keep_keys": ["shrink_map"]}}]
    ds = SimpleDataSet(data_dir=str(tmp_path), label_file_list=[str(tmp_path / "l.txt")], transforms=ops,
                       mode="train", global_cfg={})
    ds.set_epoch(0)
    area0 = float(ds[0][0].sum())
    ds.set_epoch(5)
    assert [op.shrink_ratio for op in ds.ops[2:4]] == pytest.approx([0.5, 0.5])  # 0.4 + 0.2 * 5 / 10
    area5 = float(ds[0][0].sum())
    # D = A (1 - r^2) / L: r 0.4 -> 5.6 px, r 0.5 -> 5.0 px; shrunk 40x20 box ~ 28.8x8.8 vs 30x10
    assert area0 == pytest.approx(28.8 * 8.8, rel=0.2) and area5 == pytest.approx(30 * 10, rel=0.2)
    assert area5 > area0


def test_tensorboard_sink_writes_events(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ocr_core.observability.tensorboard_sink import open_sink

    assert open_sink(False, tmp_path, True) is None and open_sink(True, tmp_path, False) is None
    sink = open_sink(True, tmp_path, True)
    assert sink is not None
    sink.on_step({"loss": 2.5, "acc": 0.25, "lr": 0.001, "epoch": 1, "data_time": 0.1}, 1)
    sink.on_step({"loss": 1.5, "acc": 0.5, "lr": 0.002, "epoch": 1}, 2)
    sink.on_eval({"hmean": 0.75, "note": "x"}, 2)
    sink.close()
    acc = EventAccumulator(str(tmp_path / "vdl"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"TRAIN/loss", "TRAIN/acc", "TRAIN/lr", "EVAL/hmean"}
    assert [(e.step, e.value) for e in acc.Scalars("TRAIN/loss")] == [(1, 2.5), (2, 1.5)]
    assert acc.Scalars("EVAL/hmean")[0].value == 0.75
