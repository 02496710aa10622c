"""Issue #15 item 9: user errors are one line on stderr and exit 2 (never a traceback)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ocr_core.cli import main, user_message
from ocr_core.errors import ConfigError, DataError

REC_CONFIG = "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml"


def _one_line_error(capsys, verb: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if " eta " not in ln]  # progress lines
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ocrflow {verb}: error: ")
    return lines[0]


def _img(path, h=20, w=40):
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 200, np.uint8))
    path.write_bytes(buf.tobytes())


def test_empty_config_file(tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    empty = tmp_path / "empty.yml"
    empty.write_text("", encoding="utf-8")
    assert main(["train", "-c", str(empty)]) == 2
    assert str(empty) in _one_line_error(capsys, "train")


@pytest.mark.parametrize("opt", ["Global=3", "Train=[1, 2]"])
def test_section_override_must_be_a_mapping(opt, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["train", "-c", REC_CONFIG, "-o", opt]) == 2
    line = _one_line_error(capsys, "train")
    assert f"-o {opt}" in line and "must be a mapping" in line


@pytest.mark.parametrize("size", [0, -2])
def test_batch_size_must_be_positive(tmp_path, size):
    from ocr_core.data.loader import build_dataloader

    _img(tmp_path / "a.png")
    (tmp_path / "l.txt").write_text("a.png\tab\n", encoding="utf-8")
    cfg = {"Global": {}, "Eval": {"dataset": {"name": "SimpleDataSet", "data_dir": str(tmp_path),
                                              "label_file_list": [str(tmp_path / "l.txt")],
                                              "transforms": [{"DecodeImage": {"img_mode": "BGR"}}]},
                                  "loader": {"batch_size_per_card": size}}}
    with pytest.raises(ConfigError) as err:
        build_dataloader(cfg, "Eval")
    assert str(err.value) == f"Eval.loader.batch_size_per_card: must be >= 1, got {size}"


def test_non_utf8_dictionary(tmp_path, capsys):
    _img(tmp_path / "a.png")
    (tmp_path / "l.txt").write_text("a.png\tab\n", encoding="utf-8")
    d = tmp_path / "dict.txt"
    d.write_bytes(b"a\nb\xff\xfe\nc\n")
    assert main(["validate-data", "--mode", "rec", "--label-file", str(tmp_path / "l.txt"),
                 "--data-dir", str(tmp_path), "--dict", str(d)]) == 2
    assert f"{d}:2: not UTF-8" in _one_line_error(capsys, "validate-data")


def test_unwritable_and_clashing_outputs(tmp_path, capsys):
    _img(tmp_path / "a.png")
    labels = tmp_path / "l.txt"
    labels.write_text("a.png\tab\n", encoding="utf-8")
    a_file = tmp_path / "plain_file"
    a_file.write_text("x", encoding="utf-8")
    # --json below a regular file
    assert main(["validate-data", "--mode", "rec", "--label-file", str(labels), "--data-dir", str(tmp_path),
                 "--json", str(a_file / "report.json")]) == 2
    line = _one_line_error(capsys, "validate-data")
    assert str(a_file) in line
    # --out below a regular file
    assert main(["build-lmdb", "--label-file", str(labels), "--data-dir", str(tmp_path),
                 "--out", str(a_file / "lmdb")]) == 2
    assert str(a_file) in _one_line_error(capsys, "build-lmdb")
    assert a_file.read_text(encoding="utf-8") == "x"


class _Broken(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, idx):
        if idx == 2:
            raise DataError("/data/x.txt:3: image cannot be decoded: /data/c.png")
        return torch.zeros(1)


def test_data_error_inside_a_loader_worker_is_one_line():
    loader = DataLoader(_Broken(), batch_size=1, num_workers=1)
    with pytest.raises(DataError) as err:
        list(loader)
    assert "Traceback" in str(err.value)  # what torch hands the main process
    assert user_message(err.value) == \
        "/data/x.txt:3: image cannot be decoded: /data/c.png (in a DataLoader worker)"
    assert user_message(DataError("plain")) == "plain"


def test_export_without_checkpoint_refuses(tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = str(repo_root / REC_CONFIG)
    assert main(["export", "-c", cfg, "--out", str(tmp_path / "exp")]) == 2
    line = _one_line_error(capsys, "export")
    assert "Global.pretrained_model" in line and "--random" in line
    assert not (tmp_path / "exp").exists()


def test_pipeline_run_local_missing_raw_dir_fails_before_starting(tmp_path, capsys, monkeypatch):
    pytest.importorskip("kfp")
    import ocr_core.storage.embedded as embedded

    class _NoStart:
        def __init__(self, *a, **k):
            raise AssertionError("the object store was started")

    monkeypatch.setattr(embedded, "EmbeddedS3", _NoStart)
    missing = tmp_path / "raw_nope"
    assert main(["pipeline", "run", "--local", "--raw-data", str(missing),
                 "--pipeline-root", str(tmp_path / "root")]) == 2
    line = _one_line_error(capsys, "pipeline")
    assert f"{missing}: raw data directory does not exist" in line
    assert "\x1b[" not in line
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("content, message", [
    (b"Global: [1, 2]\n", "Global: a section must be a mapping, got list"),
    (b"\xff\xfeGlobal: {}\n", "not UTF-8 (invalid start byte at byte 0)"),
])
def test_config_file_with_a_bad_global_or_encoding(tmp_path, capsys, content, message):
    cfg = tmp_path / "cfg.yml"
    cfg.write_bytes(content)
    assert main(["train", "-c", str(cfg)]) == 2
    assert _one_line_error(capsys, "train") == f"ocrflow train: error: {cfg}: {message}"
