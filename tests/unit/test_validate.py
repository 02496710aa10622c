"""Dataset validator: every error class at its exact line, cheap line check, statistics."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ocr_core.data.charset import read_charset
from ocr_core.data.validate import check_line, validate_labels

QUAD = [[2, 2], [30, 2], [30, 10], [2, 10]]


def _det(boxes):
    return json.dumps([{"transcription": t, "points": p} for t, p in boxes])


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    ok, buf = cv2.imencode(".png", np.full((40, 64, 3), 127, np.uint8))
    assert ok
    (d / "a.png").write_bytes(buf.tobytes())
    (d / "b.png").write_bytes(buf.tobytes())
    (d / "broken.png").write_bytes(b"not an image")
    return d


def _codes(report):
    return [(e.line, e.code) for e in report.errors]


def test_det_error_classes_with_line_numbers(tmp_path, data_dir):
    lines = [
        f"a.png\t{_det([('ok', QUAD), ('###', QUAD)])}",              # 1 good
        "a.png " + _det([("x", QUAD)]),                               # 2 missing tab
        "a.png\t[{\"transcription\": \"x\", \"points\": [[1,2],",     # 3 bad JSON
        f"a.png\t{_det([('x', [[0, 0], [5, 5]])])}",                 # 4 < 3 points
        'a.png\t[{"transcription": "x", "points": [[0,0],["a",1],[3,3]]}]',  # 5 non-numeric
        'a.png\t[{"transcription": "x", "points": [[0,0],[NaN,1],[3,3]]}]',  # 6 NaN
        f"a.png\t{_det([('x', [[0, 0], [10, 10], [10, 0], [0, 10]])])}",  # 7 bow tie
        f"a.png\t{_det([('x', [[0, 0], [5, 5], [10, 10]])])}",        # 8 zero area
        f"a.png\t{_det([('x', [[50, 2], [70, 2], [70, 10], [50, 10]])])}",  # 9 outside 64x40
        f"missing.png\t{_det([('x', QUAD)])}",                        # 10 missing image
        f"broken.png\t{_det([('x', QUAD)])}",                         # 11 undecodable
        f"../a.png\t{_det([('x', QUAD)])}",                           # 12 escapes data_dir
        "a.png\t[]",                                                  # 13 no boxes
        "",                                                           # 14 blank: skipped
        f'["a.png", "b.png"]\t{_det([("multi", QUAD)])}',             # 15 good multi-image
        f"a.png\t{_det([('###', [[0, 0], [5, 5], [10, 10]])])}",      # 16 degenerate don't care: fine
    ]
    label = tmp_path / "det.txt"
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep = validate_labels([str(label)], str(data_dir), "det")
    assert _codes(rep) == [
        (2, "missing_delimiter"), (3, "bad_json"), (4, "few_points"), (5, "bad_coordinate"),
        (6, "bad_coordinate"), (7, "bad_polygon"), (8, "bad_polygon"), (9, "outside_image"),
        (10, "missing_image"), (11, "bad_image"), (12, "path_escape"), (13, "no_boxes"),
    ]
    msgs = [str(e) for e in rep.errors]
    assert msgs[0].startswith(f"{label}:2: no tab")
    assert "self-intersecting" in msgs[5] and "zero-area" in msgs[6]
    assert "point (70, 2) outside the 64x40 image" in msgs[7]
    assert rep.good_lines == 3 and rep.stats.lines == 15 and rep.stats.bad_lines == 12
    assert rep.stats.boxes == 4 and rep.stats.ignored_boxes == 2
    assert rep.stats.boxes_per_image["1"] == 2 and rep.stats.boxes_per_image["2-5"] == 1
    assert rep.stats.image_long_side["257-512"] == 0 and rep.stats.image_long_side["1-64"] >= 3
    assert rep.stats.errors_by_code["bad_polygon"] == 2


def test_rec_error_classes_and_charset(tmp_path, data_dir):
    lines = [
        "a.png\thello",          # 1 good
        "a.png\t",               # 2 empty text
        "a.png\t" + "x" * 30,    # 3 too long
        "a.png\tcafé€€",         # 4 unknown chars
        "b.png hello",           # 5 missing tab
        "a.png\twith space",     # 6 good (space in dict)
    ]
    label = tmp_path / "rec.txt"
    label.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b"a.png\t\xff\xfe\n")  # 7 bad UTF-8
    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("\n".join("abcdefghijklmnopqrstuvwxyz") + "\n", encoding="utf-8")
    charset = read_charset(str(dict_file), use_space_char=True)
    rep = validate_labels(str(label), str(data_dir), "rec", charset=charset, max_text_length=25)
    assert _codes(rep) == [(2, "empty_text"), (3, "text_too_long"), (4, "unknown_chars"),
                           (5, "missing_delimiter"), (7, "bad_encoding")]
    assert "3 character(s) not in the dictionary: '€' x2, 'é' x1" in rep.errors[2].reason
    assert "30 characters, max_text_length is 25" in rep.errors[1].reason
    st = rep.stats
    assert st.unknown_chars == {"€": 2, "é": 1}
    assert st.charset_size == 27
    # used: h e l o w i t s p a c (and the space) from lines 1, 3 (x), 4, 6
    assert st.chars_used == len(set("hellowithspacecafx ")) and st.text_lengths["6-10"] == 1
    js = json.loads(rep.to_json())
    assert js["ok"] is False and js["errors"][0]["line"] == 2 and js["stats"]["good_lines"] == 2
    text = rep.to_text()
    assert f"{label}:2: empty text" in text and "unknown characters (3)" in text


def test_check_line_cheap_mode_skips_geometry_and_images(data_dir):
    bowtie = _det([("x", [[0, 0], [10, 10], [10, 0], [0, 10]])])
    res = check_line(f"nothere.png\t{bowtie}", "f.txt", 3, "det", str(data_dir), check_geometry=False)
    assert res.ok and res.entry is not None and res.entry.paths == ("nothere.png",)
    res = check_line(f"nothere.png\t{bowtie}", "f.txt", 3, "det", str(data_dir), check_images=True)
    assert [(i.code, str(i)[:8]) for i in res.issues] == [("bad_polygon", "f.txt:3:"), ("missing_image", "f.txt:3:")]
    # 'any' mode only checks the line structure
    assert check_line("a.png\tnot json", "f.txt", 1, "any", str(data_dir)).ok
    assert not check_line("/etc/passwd\tx", "f.txt", 1, "any", str(data_dir)).ok
    # no data_dir: paths are not confined
    assert check_line("../a.png\tx", "f.txt", 1, "rec", "").ok


def test_stats_text_for_clean_det(tmp_path, data_dir):
    label = tmp_path / "det.txt"
    label.write_text(f"a.png\t{_det([('ab', QUAD)] * 3)}\n", encoding="utf-8")
    rep = validate_labels([str(label)], str(data_dir), "det", check_images=False)
    assert rep.ok and rep.stats.images == 1 and rep.stats.images_read == 0
    assert "boxes: 3" in rep.stats.to_text()
    assert json.loads(rep.stats.to_json())["text_lengths"]["1-5"] == 3
