"""Issue #15: what ``train`` refuses before it creates anything, each naming the key / file / line.

The CLI side (one line, exit 2, tmp dir unchanged) is tests/unit/test_bad_inputs.py; these pin the
checks themselves: the optimizer and lr schedule names (config validation, so before
``save_model_dir``/``train.log``), the numeric ``Global`` ranges, a ``data_dir`` that is not a
directory (before the dataset rejects every sample), and a label file without a usable line (one
error naming the first bad line, without the per-line warnings).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from ocr_core.config import parse_global, validate_config
from ocr_core.config.schema import LR_SCHEDULES, OPTIMIZERS
from ocr_core.data.loader import build_dataloader
from ocr_core.data.simple_dataset import SimpleDataSet
from ocr_core.errors import ConfigError, DataError


@pytest.mark.parametrize("opt, key", [({"name": "Foo"}, "Optimizer.name"),
                                      ({"name": "Adam", "lr": {"name": "Bar"}}, "Optimizer.lr.name")])
def test_unknown_optimizer_or_schedule_is_a_config_error(opt, key):
    with pytest.raises(ConfigError, match=rf"^{key}: unsupported '(Foo|Bar)'; choose "):
        validate_config({"Optimizer": opt})


def test_every_supported_optimizer_and_schedule_validates():
    for name in OPTIMIZERS:
        validate_config({"Optimizer": {"name": name}})
    for lr in LR_SCHEDULES:
        extra = {"decay_epochs": [2], "values": [0.1, 0.01]} if lr == "Piecewise" else {}
        validate_config({"Optimizer": {"name": "Adam", "lr": {"name": lr, **extra}}})
    # OpenOCR's scheduler names are mapped onto ours before the check
    cfg = validate_config({"Optimizer": {"name": "AdamW", "lr": 0.001}, "LRScheduler": {"name": "CosineAnnealingLR"}})
    assert cfg["Optimizer"]["lr"]["name"] == "Cosine"


@pytest.mark.parametrize("key, value", [("epoch_num", 0), ("epoch_num", -1), ("grad_accum_steps", 0),
                                        ("log_smooth_window", 0), ("max_steps", 0), ("save_step_interval", 0),
                                        ("print_batch_step", -1), ("save_epoch_step", -2),
                                        ("eval_batch_step", -5), ("eval_batch_step", [0, -5]),
                                        ("eval_batch_epoch", -1), ("eval_visualize", -1),
                                        ("max_train_seconds", -1.0), ("max_train_seconds", float("nan")),
                                        ("max_text_length", 0)])
def test_out_of_range_global_numbers_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^Global\.{key}: must be >= "):
        parse_global({"Global": {key: value}})


def test_boundary_global_numbers_are_accepted():
    g = parse_global({"Global": {"epoch_num": 1, "print_batch_step": 0, "max_train_seconds": 0.0,
                                 "eval_batch_step": [0, 0], "eval_visualize": 0, "save_epoch_step": 0,
                                 "max_steps": None, "save_step_interval": None}})
    assert g.epoch_num == 1 and g.max_train_seconds == 0.0


def _rec_cfg(data_dir: str, label: str) -> dict:
    return {"Global": {}, "Train": {"dataset": {"name": "SimpleDataSet", "data_dir": data_dir,
                                                "label_file_list": [label], "transforms": []},
                                    "loader": {"batch_size_per_card": 1}}}


@pytest.mark.parametrize("what, why", [("file", "is not a directory"), ("missing", "does not exist")])
def test_data_dir_not_a_directory_is_refused_before_the_dataset(tmp_path, what, why):
    label = tmp_path / "l.txt"
    label.write_text("a.png\tab\n", encoding="utf-8")
    data_dir = tmp_path / what
    if what == "file":
        data_dir.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^Train\.dataset\.data_dir: {data_dir}: {why}$"):
        build_dataloader(_rec_cfg(str(data_dir), str(label)), "Train")


@pytest.fixture
def images(tmp_path):
    ok, buf = cv2.imencode(".png", np.full((8, 12, 3), 9, np.uint8))
    assert ok
    (tmp_path / "a.png").write_bytes(buf.tobytes())
    return tmp_path


def test_no_usable_line_is_one_error_naming_the_first_bad_line(images, caplog):
    label = images / "nt.txt"
    label.write_text("a.png ab\nb.png cd\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as exc:
        SimpleDataSet(data_dir=str(images), label_file_list=str(label))
    msg = str(exc.value)
    assert msg.startswith(f"no usable lines in {label}: {label}:1: no tab")
    assert msg.endswith("(and 1 more bad line(s))")
    assert "line skipped" not in caplog.text  # the error says it; no warning per line as well


def test_an_empty_label_file_says_it_has_no_line(images):
    label = images / "e.txt"
    label.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"no usable lines in .*e\.txt \(0 bad line\(s\) skipped\)"):
        SimpleDataSet(data_dir=str(images), label_file_list=str(label))


def test_bad_lines_beside_usable_ones_are_still_warned_about(images, caplog):
    label = images / "mixed.txt"
    label.write_text("a.png\tab\nb.png cd\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        ds = SimpleDataSet(data_dir=str(images), label_file_list=str(label))
    assert len(ds) == 1 and ds.stats["bad_lines"] == 1
    assert f"{label}:2: no tab" in caplog.text and "line skipped" in caplog.text
