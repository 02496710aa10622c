"""#18 item 6 in a real run: cal_metric_during_train puts the training batch's accuracy in the log,
use_visualdl writes TensorBoard events in <save_model_dir>/vdl, save_epoch_step [start, step]
saves iter_epoch_N from start on."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_core.engine.run import train
from tests.integration.rec_fixtures import make_rec_split, rec_config


def test_rec_training_batch_metric_tensorboard_and_save_epoch_step(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_rec_split(tmp_path / "train", num=8, seed=1)
    make_rec_split(tmp_path / "eval", num=4, seed=2)
    out = tmp_path / "out"
    cfg = rec_config(tmp_path / "train", tmp_path / "eval", out, "Global.num_threads=1", "Global.epoch_num=3",
                     "Global.print_batch_step=1", "Global.cal_metric_during_train=true", "Global.use_visualdl=true",
                     "Global.save_epoch_step=[1, 1]", "Global.eval_at_end=false", batch=4)
    cfg["Train"]["loader"]["drop_last"] = True
    cfg["Global"]["max_steps"] = 5  # epochs of 2 steps: epoch 3 stops after its first step
    res = train(cfg)
    assert res["global_step"] == 5
    step_lines = [ln for ln in (out / "train.log").read_text().splitlines() if "global_step:" in ln]
    assert step_lines and all("acc:" in line and "norm_edit_dis:" in line for line in step_lines)
    # [1, 1]: epochs after 1 -> 2 and 3; epoch 1 is not saved
    assert sorted(p.name for p in out.glob("iter_epoch_*")) == ["iter_epoch_2.pt", "iter_epoch_3.pt"]
    acc = EventAccumulator(str(out / "vdl"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"TRAIN/loss", "TRAIN/acc", "TRAIN/lr"} <= set(scalars)
    assert [e.step for e in acc.Scalars("TRAIN/loss")] == [1, 2, 3, 4, 5]
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("TRAIN/acc"))
