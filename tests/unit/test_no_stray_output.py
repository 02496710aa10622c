"""Issue #15 item 12: eval/infer/export create no ./output/ (the config's save_model_dir) unless asked."""

from __future__ import annotations

import cv2
import numpy as np

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


def test_train_refused_by_its_checks_leaves_no_output(tmp_path, repo_root, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    assert main(["train", "-c", str(repo_root / REC_CONFIG), "-o", "Train.loader.batch_size_per_card=0",
                 f"Global.save_model_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Train.loader.batch_size_per_card" in err[0]
    assert not out.exists()  # no save_model_dir, no train.log
    assert not (work / "output").exists() and sorted(p.name for p in work.iterdir()) == []
