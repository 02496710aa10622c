"""Issue #15 item 9: a NUL byte in a file list entry is a one-line error or a counted bad line.

``open()`` refuses a path with a NUL byte with a bare ``ValueError`` (no ``OSError``), which used to
escape every handler: training/eval died with a traceback, ``storage download`` half way through.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from ocr_core.cli import main
from ocr_core.data.simple_dataset import SimpleDataSet
from ocr_core.storage.manifest import sync_up

OPS = [{"DecodeImage": {"img_mode": "BGR"}}, {"KeepKeys": {"keep_keys": ["image", "label"]}}]


def _rec_set(root):
    root.mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        ok, buf = cv2.imencode(".png", np.full((16, 40, 3), 200, np.uint8))
        (root / name).write_bytes(buf.tobytes())
    labels = root / "labels.txt"
    labels.write_bytes(b"a.png\x00.jpg\tfirst\nb.png\tsecond\n")
    return labels


def _stderr_line(capsys, verb):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"ocrflow {verb}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_label_line_with_a_nul_byte_is_a_counted_bad_line(tmp_path):
    labels = _rec_set(tmp_path)
    for mode in ("eval", "train"):
        ds = SimpleDataSet(data_dir=str(tmp_path), label_file_list=str(labels), mode=mode, transforms=OPS)
        assert len(ds) == 1 and ds.stats["bad_lines"] == 1
        assert ds[0][1] == "second"


def test_validate_and_build_lmdb_report_it(tmp_path, capsys):
    labels = _rec_set(tmp_path / "data")
    report = tmp_path / "stats.json"
    assert main(["validate-data", "--mode", "rec", "--label-file", str(labels), "--data-dir",
                 str(tmp_path / "data"), "--json", str(report)]) == 0
    out = capsys.readouterr()
    assert f"{labels}:1: image path contains a NUL byte" in out.out + out.err
    errors = json.loads(report.read_text(encoding="utf-8"))["errors"]
    assert [e["code"] for e in errors] == ["bad_path"] and errors[0]["line"] == 1
    assert main(["build-lmdb", "--label-file", str(labels), "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "lmdb")]) == 0
    assert "wrote 1 sample(s)" in capsys.readouterr().out


def test_storage_download_refuses_a_manifest_entry_with_a_nul_byte(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hi\n", encoding="utf-8")
    pub = tmp_path / "pub"
    sync_up(src, str(pub), quiet=True)
    manifest = pub / "manifest.json"
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    doc["files"][0]["path"] = "a\x00.txt"
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    dest = tmp_path / "dl"
    assert main(["storage", "download", str(pub), str(dest)]) == 2
    line = _stderr_line(capsys, "storage")
    assert f"{manifest}: invalid manifest: files[0].path 'a\\x00.txt' contains a NUL byte" in line
    assert not dest.exists() or not any(dest.iterdir())


def test_a_config_path_with_a_nul_byte_is_one_line(tmp_path, capsys, repo_root):
    labels = _rec_set(tmp_path / "data")
    cfg = tmp_path / "cfg.yml"
    text = (repo_root / "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml").read_text(encoding="utf-8")
    assert "  save_model_dir: ./output/rec_ppocr_v3\n" in text
    cfg.write_text(text.replace("  save_model_dir: ./output/rec_ppocr_v3\n", '  save_model_dir: "out\\0dir"\n'),
                   encoding="utf-8")
    data = tmp_path / "data"
    rc = main(["train", "-c", str(cfg), "-o", f"Train.dataset.data_dir={data}",
               f"Train.dataset.label_file_list=[{labels}]", f"Eval.dataset.data_dir={data}",
               f"Eval.dataset.label_file_list=[{labels}]", "Train.loader.num_workers=0",
               "Eval.loader.num_workers=0"])
    assert rc == 2
    assert "Global.save_model_dir" in _stderr_line(capsys, "train")


def test_any_other_path_with_a_nul_byte_is_one_line_at_the_cli_boundary(tmp_path, capsys):
    # argv cannot carry a NUL byte, but a config value or a file list can; convert-labels stands in
    (tmp_path / "gt_img_1.txt").write_text("1,1,30,1,30,20,1,20,word\n", encoding="utf-8")
    assert main(["convert-labels", "--mode", "det", "--gt-dir", str(tmp_path), "--image-dir", str(tmp_path),
                 "--out", str(tmp_path / "x\x00.txt")]) == 2
    assert _stderr_line(capsys, "convert-labels").endswith("a path contains a NUL byte (embedded null byte)")
