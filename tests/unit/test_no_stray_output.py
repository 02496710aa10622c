"""Issue #15 item 12: eval/infer/export create no ./output/ (the config's save_model_dir) unless asked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr_core.cli import main

REC_CONFIG = "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml"


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    ok, buf = cv2.imencode(".png", np.full((32, 100, 3), 255, np.uint8))
    (data / "a.png").write_bytes(buf.tobytes())
    (data / "l.txt").write_text("a.png\tab\n", encoding="utf-8")
    return data


def test_eval_infer_export_leave_the_working_dir_alone(tmp_path, repo_root, monkeypatch, capsys):
    data = _data(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = str(repo_root / REC_CONFIG)
    evald = [f"Eval.dataset.data_dir={data}", f"Eval.dataset.label_file_list=[{data / 'l.txt'}]"]
    evald.append("Eval.loader.num_workers=0")
    # eval and infer get as far as loading the (missing) checkpoint: logging, model and data are set up
    assert main(["eval", "-c", cfg, "-o", *evald, f"Global.checkpoints={tmp_path / 'none.pt'}"]) == 2
    assert main(["infer", "-c", cfg, "-o", f"Global.pretrained_model={tmp_path / 'none.pt'}",
                 "--image", str(data / "a.png"), "--out", str(tmp_path / "res")]) == 2
    assert main(["export", "-c", cfg, "--random", "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "model.onnx").is_file()
    assert sorted(p.name for p in work.iterdir()) == []  # the config's ./output/rec_ppocr_v3 never appears
    capsys.readouterr()


def test_eval_logs_beside_an_existing_training_output(tmp_path, repo_root, monkeypatch):
    data = _data(tmp_path)
    out = tmp_path / "trained"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "-c", str(repo_root / REC_CONFIG), "-o", f"Global.save_model_dir={out}",
                 f"Eval.dataset.data_dir={data}", f"Eval.dataset.label_file_list=[{data / 'l.txt'}]",
                 f"Global.checkpoints={tmp_path / 'none.pt'}"]) == 2
    assert (out / "eval.log").is_file()


@pytest.mark.parametrize("refusal, key", [
    ("Train.loader.batch_size_per_card=0", "Train.loader.batch_size_per_card"),  # a config check
    ("Train.dataset.label_file_list=[{data}/missing.txt]", "missing.txt"),  # a data check
])
def test_train_refused_by_its_checks_leaves_no_output(tmp_path, repo_root, monkeypatch, capsys, refusal, key):
    data = _data(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    assert main(["train", "-c", str(repo_root / REC_CONFIG), "-o", f"Train.dataset.data_dir={data}",
                 f"Train.dataset.label_file_list=[{data / 'l.txt'}]", refusal.format(data=data),
                 f"Global.save_model_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not out.exists()  # no save_model_dir, no train.log
    assert sorted(p.name for p in work.iterdir()) == []


def test_train_with_save_model_dir_under_a_file_is_one_line(tmp_path, repo_root, monkeypatch, capsys):
    data = _data(tmp_path)
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "plain_file"
    a_file.write_text("x", encoding="utf-8")
    assert main(["train", "-c", str(repo_root / REC_CONFIG), "-o", f"Train.dataset.data_dir={data}",
                 f"Train.dataset.label_file_list=[{data / 'l.txt'}]", "Train.loader.num_workers=0",
                 f"Eval.dataset.data_dir={data}", f"Eval.dataset.label_file_list=[{data / 'l.txt'}]",
                 "Eval.loader.num_workers=0", "Train.loader.batch_size_per_card=1", "Global.epoch_num=1",
                 f"Global.save_model_dir={a_file / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ocrflow train: error: ") and str(a_file) in err[0], err
    assert "Traceback" not in err[0] and a_file.read_text(encoding="utf-8") == "x"
