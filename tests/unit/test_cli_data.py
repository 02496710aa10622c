"""The data verbs through ocr_core.cli.main: convert-labels, validate-data, build-lmdb."""

from __future__ import annotations

import json

import cv2
import numpy as np

from ocr_core.cli import main


def _img(path, h=20, w=40):
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 200, np.uint8))
    path.write_bytes(buf.tobytes())


def test_convert_labels_det_and_reverse(tmp_path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_img_1.txt").write_bytes("\ufeff1,1,30,1,30,15,1,15,Hi, there\r\n2,2,5,2,5,5,2,5,###\r\n".encode())
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _img(imgs / "img_1.png")
    out = tmp_path / "det.txt"
    rc = main(["convert-labels", "--mode", "det", "--gt-dir", str(gt), "--image-dir", str(imgs),
               "--out", str(out), "--image-prefix", "imgs"])
    assert rc == 0 and "1 image(s), 2 boxes (1 don't care)" in capsys.readouterr().out
    path, label = out.read_text(encoding="utf-8").rstrip("\n").split("\t")
    assert path == "imgs/img_1.png" and json.loads(label)[0]["transcription"] == "Hi, there"
    back = tmp_path / "back"
    assert main(["convert-labels", "--mode", "det", "--reverse", "--label-file", str(out), "--out", str(back)]) == 0
    assert (back / "gt_img_1.txt").read_bytes() == (gt / "gt_img_1.txt").read_bytes()
    # missing gt dir: a user error, exit 2 without a traceback
    assert main(["convert-labels", "--mode", "det", "--gt-dir", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "gt directory does not exist" in capsys.readouterr().err


def test_convert_labels_rec(tmp_path):
    (tmp_path / "gt.txt").write_text('word_1.png, "a, b c"\n', encoding="utf-8")
    out = tmp_path / "rec.txt"
    assert main(["convert-labels", "--mode", "rec", "--gt-dir", str(tmp_path / "gt.txt"), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == "word_1.png\ta, b c\n"


def test_validate_data_exit_codes_and_json(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _img(data / "a.png")
    good = tmp_path / "good.txt"
    good.write_text("a.png\thello\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png\thello\nmissing.png\tx\na.png\t\n", encoding="utf-8")
    base = ["validate-data", "--mode", "rec", "--data-dir", str(data), "--dict", "default"]
    assert main([*base, "--label-file", str(good), "--strict"]) == 0
    capsys.readouterr()
    report = tmp_path / "r" / "report.json"
    assert main([*base, "--label-file", str(good), str(bad), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"{bad}:2: image not found" in out and f"{bad}:3: empty text" in out
    assert "2 error(s) in 2 line(s); 2 good line(s)" in out and "charset:" in out
    js = json.loads(report.read_text(encoding="utf-8"))
    assert [e["line"] for e in js["errors"]] == [2, 3] and js["stats"]["images"] == 2
    assert main([*base, "--label-file", str(bad), "--strict"]) == 1
    assert main([*base, "--label-file", str(tmp_path / "none.txt")]) == 2


def test_validate_data_det(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _img(data / "a.png")
    lab = tmp_path / "det.txt"
    lab.write_text('a.png\t[{"transcription": "x", "points": [[0,0],[10,0],[10,5],[0,5]]}]\n'
                   'a.png\t[{"transcription": "x", "points": [[0,0],[99,0],[99,5],[0,5]]}]\n', encoding="utf-8")
    assert main(["validate-data", "--mode", "det", "--label-file", str(lab), "--data-dir", str(data),
                 "--strict"]) == 1
    assert f"{lab}:2: box 1: point (99, 0) outside the 40x20 image" in capsys.readouterr().out


def test_build_lmdb_verb(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _img(data / "a.png")
    _img(data / "b.png", 10, 10)
    lab = tmp_path / "rec.txt"
    lab.write_text("a.png\tone\nb.png\ttwo words\nc.png\tgone\n", encoding="utf-8")
    out = tmp_path / "db"
    assert main(["build-lmdb", "--label-file", str(lab), "--data-dir", str(data), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote 2 sample(s)" in text and f"skipped: {lab}:3: image not found" in text
    assert main(["build-lmdb", "--label-file", str(lab), "--data-dir", str(data), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["build-lmdb", "--label-file", str(lab), "--data-dir", str(data), "--out", str(out),
                 "--overwrite"]) == 0
