"""Issue #15 item 10: label problems are visible in validate-data, build-lmdb, train.log and the report."""

from __future__ import annotations

import json

import cv2
import numpy as np

from ocr_core.cli import main


def _img(path, h=32, w=100):
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 220, np.uint8))
    path.write_bytes(buf.tobytes())


def _rec_set(tmp_path):
    data = tmp_path / "words"
    data.mkdir()
    for i in range(6):
        _img(data / f"w{i}.png")
    lines = ["w0.png\tabc", "w1.png\tcafé€", "w2.png\t" + "x" * 30, "w3.png\tdone", "w4.png\tcafé",
             "no tab on this line", "w5.png\tok"]
    (tmp_path / "rec.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data, tmp_path / "rec.txt"


def test_validate_data_reports_empty_det_transcriptions(tmp_path, capsys):
    _img(tmp_path / "a.png", 40, 60)
    box = [[1, 1], [20, 1], [20, 10], [1, 10]]
    label = json.dumps([{"transcription": "", "points": box}, {"transcription": "###", "points": box},
                        {"transcription": "ok", "points": box}])
    (tmp_path / "det.txt").write_text(f"a.png\t{label}\n", encoding="utf-8")
    report = tmp_path / "r.json"
    assert main(["validate-data", "--mode", "det", "--label-file", str(tmp_path / "det.txt"),
                 "--data-dir", str(tmp_path), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'det.txt'}:1: box 1: empty transcription" in out
    assert "boxes: 3  don't care: 1  empty transcription: 1" in out
    assert out.strip().splitlines()[-1] == "0 error(s) in 0 line(s); 1 good line(s), 1 warning(s)"
    js = json.loads(report.read_text(encoding="utf-8"))
    assert js["stats"]["empty_texts"] == 1 and [w["code"] for w in js["warnings"]] == ["empty_text"]


def test_build_lmdb_dict_and_max_text_length(tmp_path, capsys):
    data, labels = _rec_set(tmp_path)
    assert main(["build-lmdb", "--label-file", str(labels), "--data-dir", str(data), "--out", str(tmp_path / "a"),
                 "--dict", "default", "--max-text-length", "25"]) == 0
    out = capsys.readouterr().out
    # 7 lines: 1 bad line, 1 too long, 2 with é/€ -> 3 written
    assert ("wrote 3 sample(s) to " + str(tmp_path / "a") +
            " (4 skipped: missing_delimiter:1  text_too_long:1  unknown_chars:2, map size 64 MiB)") in out
    assert main(["build-lmdb", "--label-file", str(labels), "--data-dir", str(data), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "wrote 6 sample(s)" in out and "dictionary check skipped (no --dict)" in out


def test_label_quality_of_simple_and_lmdb_sets(tmp_path):
    from ocr_core.data.label_quality import describe, label_quality
    from ocr_core.data.lmdb_dataset import LMDBDataSet, close_lmdb_envs
    from ocr_core.data.simple_dataset import SimpleDataSet

    data, labels = _rec_set(tmp_path)
    ops = [{"DecodeImage": {"img_mode": "BGR"}}, {"CTCLabelEncode": {"max_text_length": 25}}]
    ds = SimpleDataSet(data_dir=str(data), label_file_list=[str(labels)], transforms=ops, mode="eval")
    q = label_quality(ds)
    assert q == {"samples": 6, "bad_lines": 1, "max_text_length": 25, "too_long": 1, "empty": 0,
                 "with_unknown_chars": 2, "unknown_chars": {"é": 2, "€": 1}}
    assert describe(q) == ["1 bad label line(s) skipped",
                           "1 text(s) longer than max_text_length 25 (rejected when drawn)",
                           "2 label(s) lose characters outside the dictionary: 'é' x2, '€' x1"]
    assert main(["build-lmdb", "--label-file", str(labels), "--data-dir", str(data),
                 "--out", str(tmp_path / "lmdb" / "one")]) == 0
    lm = LMDBDataSet(data_dir=str(tmp_path / "lmdb"), transforms=ops, mode="eval")
    q = label_quality(lm)
    close_lmdb_envs()
    assert (q["samples"], q["bad_lines"], q["too_long"], q["with_unknown_chars"]) == (6, 0, 1, 2)


def test_training_logs_and_reports_label_problems(tmp_path, capsys, repo_root):
    from ocr_core.observability.report import training_report

    data, labels = _rec_set(tmp_path)
    out = tmp_path / "run"
    opts = [f"Global.save_model_dir={out}", "Global.character_dict_path=null", "Global.max_text_length=25",
            "Global.epoch_num=1", "Global.max_steps=1", "Global.eval_at_end=false", "Global.use_amp=false",
            "Architecture.Neck.hidden_size=8", "Train.dataset.name=SimpleDataSet", f"Train.dataset.data_dir={data}",
            f"Train.dataset.label_file_list=[{labels}]", "Train.loader.batch_size_per_card=2",
            "Train.loader.num_workers=0", "Eval=null"]
    assert main(["train", "-c", str(repo_root / "configs/rec/rec_mv3_none_bilstm_ctc.yml"), "-o", *opts]) == 0
    capsys.readouterr()
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "Train data: 1 bad label line(s) skipped" in log
    assert "Train data: 1 text(s) longer than max_text_length 25 (rejected when drawn)" in log
    assert "Train data: 2 label(s) lose characters outside the dictionary: 'é' x2, '€' x1" in log
    quality = json.loads((out / "data_quality.json").read_text(encoding="utf-8"))
    assert quality["Train"]["with_unknown_chars"] == 2 and quality["Train"]["samples"] == 6
    html = training_report(out).read_text(encoding="utf-8")
    assert "Training data quality" in html and "with_unknown_chars" in html
