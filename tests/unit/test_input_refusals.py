"""Library-level refusals behind the bad-input sweep's rows (tests/unit/test_bad_inputs.py): the
pipeline's ``-p`` names, types and ``workers``; the atomic label writer's temporary file;
``validate_labels``'s data dir and delimiter; ``crop_words``'s image dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocr_core.errors import ConfigError, DataError


@pytest.mark.parametrize(("params", "needle"), [
    ({"bogus_key": 1}, "bogus_key: unknown pipeline parameter; the parameters are: raw_data_uri, "),
    ({"worker": 2}, "worker: unknown pipeline parameter; did you mean workers?"),
    ({"workers": "two"}, "workers: expected an integer, got str 'two'"),
    ({"workers": True}, "workers: expected an integer"),
    ({"det_overrides": "Global.seed=3"}, "det_overrides: expected a JSON list"),
    ({"model_name": 3}, "model_name: expected a string"),
    ({"workers": 0}, "workers must be >= 1"),
    ({"epochs": -1}, "epochs: must be >= 0"),
    ({"gpus": -2}, "gpus: must be >= 0"),
])
def test_pipeline_arguments_are_checked_by_name_type_and_range(params: dict, needle: str) -> None:
    pytest.importorskip("kfp")
    from pipelines.ocr_train_pipeline import check_arguments

    with pytest.raises(ConfigError) as exc:
        check_arguments({"raw_data_uri": "s3://b/raw", **params})
    assert needle in str(exc.value)


def test_pipeline_arguments_of_the_right_types_pass() -> None:
    pytest.importorskip("kfp")
    from pipelines.ocr_train_pipeline import check_arguments

    check_arguments({"raw_data_uri": "s3://b/raw", "epochs": 3, "workers": 1, "gpus": 0, "parity_atol": 1,
                     "max_error_ratio": 0.1, "det_overrides": ["Global.seed=3"], "model_name": "m"})


def test_label_writer_refuses_a_directory_and_removes_its_temporary_file(tmp_path: Path, monkeypatch) -> None:
    from ocr_core.data import icdar

    with pytest.raises(DataError, match="is a directory"):
        icdar._write_lines(str(tmp_path), ["a"])

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(icdar.os, "replace", full_disk)
    with pytest.raises(OSError):
        icdar._write_lines(str(tmp_path / "out.txt"), ["a"])
    assert os.listdir(tmp_path) == []


def test_validate_labels_refuses_a_missing_data_dir_and_an_empty_delimiter(tmp_path: Path) -> None:
    from ocr_core.data.validate import validate_labels

    label = tmp_path / "l.txt"
    label.write_text("a.png\tab\n", encoding="utf-8")
    with pytest.raises(DataError, match="nodir: data dir does not exist"):
        validate_labels(str(label), str(tmp_path / "nodir"), "rec")
    with pytest.raises(DataError, match="is not a directory"):
        validate_labels(str(label), str(label), "rec")
    with pytest.raises(DataError, match="delimiter"):
        validate_labels(str(label), str(tmp_path), "rec", delimiter="")


def test_crop_words_refuses_an_image_dir_that_is_not_a_directory(tmp_path: Path) -> None:
    from ocr_core.data.crop_words import crop_words

    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_img_1.txt").write_text("10,10,50,10,50,30,10,30,hello\n", encoding="utf-8")
    plain = tmp_path / "plain"
    plain.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="image directory is not a directory"):
        crop_words(str(gt), str(plain), str(tmp_path / "out"), progress=False)
    with pytest.raises(DataError, match="image directory does not exist"):
        crop_words(str(gt), str(tmp_path / "none"), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()
