"""ICDAR2015 gt <-> PaddleOCR label conversion: lossless texts, BOM/CRLF, round trips."""

from __future__ import annotations

import json

import pytest

from ocr_core.data import icdar
from ocr_core.errors import DataError

BOM = "\ufeff"

GT1 = [
    "377,117,463,117,465,130,378,130,Genaxis Theatre",
    "493,115,519,115,519,131,493,131,[06]",
    "374,155,409,155,409,170,374,170,###",
    '1,2,30,2,30,9,1,9,Hello, "world"',
    "10,20,30,20,30,40,10,40,a,b,,c",
    "5,5,9,5,9,9,5,9, padded ",
]
GT2 = ["100,100,200,100,200,150,100,150,Ünïcødé 文字"]


def _write_gt(path, lines, bom=True, crlf=True):
    nl = "\r\n" if crlf else "\n"
    path.write_bytes(((BOM if bom else "") + "".join(line + nl for line in lines)).encode("utf-8"))


def _gen_label_det_text(line: str) -> str:
    """What PaddleOCR's gen_label.py keeps of a transcription (SPEC §2.7: tmp[8] after split(','))."""
    return line.strip("\ufeff\r\n").split(",")[8]


def _gen_label_rec(line: str) -> tuple[str, str]:
    """gen_label.py rec mode: all spaces removed, split on ',', double quotes removed."""
    parts = line.strip("\ufeff\r\n").replace(" ", "").split(",")
    return parts[0], parts[1].replace('"', "")


@pytest.fixture
def det_gt(tmp_path):
    gt_dir = tmp_path / "gt"
    img_dir = tmp_path / "images"
    gt_dir.mkdir()
    img_dir.mkdir()
    _write_gt(gt_dir / "gt_img_1.txt", GT1)
    _write_gt(gt_dir / "gt_img_2.txt", GT2)
    _write_gt(gt_dir / "gt_img_10.txt", ["0,0,4,0,4,4,0,4,###"])
    (img_dir / "img_1.jpg").write_bytes(b"x")
    (img_dir / "img_2.png").write_bytes(b"x")  # real extension must be found
    return gt_dir, img_dir


def test_det_conversion_keeps_commas_quotes_spaces(det_gt, tmp_path):
    gt_dir, img_dir = det_gt
    out = tmp_path / "det.txt"
    stats = icdar.convert_det_gt_dir(str(gt_dir), str(img_dir), str(out), image_prefix="ch4_training_images")
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    # natural order: img_1, img_2, img_10
    assert [ln.split("\t")[0] for ln in lines] == [
        "ch4_training_images/img_1.jpg", "ch4_training_images/img_2.png", "ch4_training_images/img_10.jpg"]
    boxes = json.loads(lines[0].split("\t", 1)[1])
    assert [b["transcription"] for b in boxes] == [
        "Genaxis Theatre", "[06]", "###", 'Hello, "world"', "a,b,,c", " padded "]
    assert boxes[0]["points"] == [[377, 117], [463, 117], [465, 130], [378, 130]]
    assert list(boxes[0]) == ["transcription", "points"]
    # ensure_ascii=False: non-ASCII stays readable
    assert "Ünïcødé 文字" in lines[1]
    assert stats.files == 3 and stats.boxes == 8 and stats.dont_care == 2
    assert stats.missing_images == ["img_10.jpg"]


def test_gen_label_would_have_lost_text(det_gt, tmp_path):
    gt_dir, img_dir = det_gt
    out = tmp_path / "det.txt"
    icdar.convert_det_gt_dir(str(gt_dir), str(img_dir), str(out))
    ours = [b["transcription"] for b in json.loads(out.read_text(encoding="utf-8").split("\n")[0].split("\t")[1])]
    theirs = [_gen_label_det_text(line) for line in GT1]
    assert theirs[3] == "Hello" and ours[3] == 'Hello, "world"'
    assert theirs[4] == "a" and ours[4] == "a,b,,c"
    # lines without commas in the text agree
    assert ours[:3] == theirs[:3]


def test_det_round_trip_is_byte_identical(det_gt, tmp_path):
    gt_dir, img_dir = det_gt
    labels = tmp_path / "det.txt"
    icdar.convert_det_gt_dir(str(gt_dir), str(img_dir), str(labels))
    back = tmp_path / "back"
    stats = icdar.det_labels_to_icdar(str(labels), str(back))
    assert stats.files == 3
    for name in ("gt_img_1.txt", "gt_img_2.txt", "gt_img_10.txt"):
        assert (back / name).read_bytes() == (gt_dir / name).read_bytes()
    # and again: labels -> gt -> labels is a fixed point
    labels2 = tmp_path / "det2.txt"
    icdar.convert_det_gt_dir(str(back), str(img_dir), str(labels2))
    assert labels2.read_bytes() == labels.read_bytes()


def test_lf_without_bom_round_trip(tmp_path):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    _write_gt(gt_dir / "gt_img_7.txt", GT1[:2], bom=False, crlf=False)
    labels = tmp_path / "l.txt"
    icdar.convert_det_gt_dir(str(gt_dir), None, str(labels))
    assert labels.read_text(encoding="utf-8").startswith("img_7.jpg\t")
    back = tmp_path / "back"
    icdar.det_labels_to_icdar(str(labels), str(back), bom=False, crlf=False)
    assert (back / "gt_img_7.txt").read_bytes() == (gt_dir / "gt_img_7.txt").read_bytes()


def test_bad_gt_line_names_file_and_line(tmp_path):
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    _write_gt(gt_dir / "gt_img_1.txt", ["1,2,3,4,5,6,7,8,ok", "1,2,x,4,5,6,7,8,bad"])
    with pytest.raises(DataError, match=r"gt_img_1.txt:2: non-numeric"):
        icdar.convert_det_gt_dir(str(gt_dir), None, str(tmp_path / "o.txt"))
    _write_gt(gt_dir / "gt_img_1.txt", ["1,2,3,4"])
    with pytest.raises(DataError, match=r"gt_img_1.txt:1: expected 8 coordinates"):
        icdar.convert_det_gt_dir(str(gt_dir), None, str(tmp_path / "o.txt"))


def test_reverse_rejects_non_quads(tmp_path):
    labels = tmp_path / "l.txt"
    labels.write_text('img_1.jpg\t[{"transcription": "a", "points": [[0,0],[4,0],[4,4],[2,6],[0,4]]}]\n',
                      encoding="utf-8")
    with pytest.raises(DataError, match=r"l.txt:1: ICDAR gt needs 4-point boxes"):
        icdar.det_labels_to_icdar(str(labels), str(tmp_path / "out"))


REC_GT = [
    'word_1.png, "Genaxis Theatre"',
    'word_2.png, "a, b"',
    'word_3.png, "say \\"hi\\""',
    'word_4.png, "###"',
    'word_5.png, " lead and trail "',
    "word_6.png, plain",
]
REC_EXPECTED = ["Genaxis Theatre", "a, b", 'say "hi"', "###", " lead and trail ", "plain"]


def test_rec_conversion_lossless(tmp_path):
    gt = tmp_path / "gt.txt"
    _write_gt(gt, REC_GT)
    out = tmp_path / "rec.txt"
    stats = icdar.convert_rec_gt(str(gt), str(out), image_prefix="ch4_words")
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert [ln.split("\t", 1) for ln in lines] == [
        [f"ch4_words/word_{i}.png", t] for i, t in enumerate(REC_EXPECTED, start=1)]
    assert stats.lines == 6 and stats.dont_care == 1
    # gen_label drops spaces, truncates at commas and strips quotes
    theirs = [_gen_label_rec(line)[1] for line in REC_GT]
    assert theirs[0] == "GenaxisTheatre" and theirs[1] == "a" and theirs[2] == "say\\hi\\"
    assert all(a != b for a, b in zip(theirs[:3], REC_EXPECTED[:3]))


def test_rec_round_trip(tmp_path):
    gt = tmp_path / "gt.txt"
    _write_gt(gt, REC_GT[:5])
    labels = tmp_path / "rec.txt"
    icdar.convert_rec_gt(str(tmp_path), str(labels))  # a directory means its gt.txt
    back = tmp_path / "back" / "gt.txt"
    icdar.rec_labels_to_icdar(str(labels), str(back))
    assert back.read_bytes() == gt.read_bytes()


def test_rec_line_without_comma(tmp_path):
    gt = tmp_path / "gt.txt"
    _write_gt(gt, ['word_1.png, "ok"', "word_2.png"])
    with pytest.raises(DataError, match=r"gt.txt:2: expected"):
        icdar.convert_rec_gt(str(gt), str(tmp_path / "o.txt"))


def test_name_helpers(tmp_path):
    assert icdar.gt_name_to_image_stem("gt_img_12.txt") == "img_12"
    assert icdar.gt_name_to_image_stem("scene.txt") == "scene"
    (tmp_path / "img_3.JPEG").write_bytes(b"x")
    assert icdar.find_image_name("img_3", str(tmp_path)) == ("img_3.JPEG", True)
    assert icdar.find_image_name("img_4", str(tmp_path)) == ("img_4.jpg", False)
