"""Word crops from ICDAR det gt (crop_quad, crop_words) and the seeded ICDAR split (split_icdar)."""

from __future__ import annotations

import itertools
import json
import os

import cv2
import numpy as np
import pytest

from ocr_core.cli import main
from ocr_core.data.crop_words import crop_quad, crop_words, is_degenerate, split_icdar
from ocr_core.data.icdar import convert_det_gt_dir, convert_rec_gt, parse_icdar_rec_line
from ocr_core.errors import DataError


def _pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random blobs (cubic resampling of it is near-lossless), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 6), max(2, w // 6), 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (5, 5), 0)


def _write_png(path, img) -> None:
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())


def _line(quad, text: str) -> str:
    return ",".join(str(int(v)) for pt in quad for v in pt) + "," + text


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# ------------------------------------------------------------------------------------ crop_quad
def test_axis_aligned_crop_is_the_exact_sub_image():
    img = np.random.default_rng(1).integers(0, 256, (60, 80, 3)).astype(np.uint8)
    crop = crop_quad(img, _rect(10, 5, 40, 25))
    assert crop.shape == (20, 30, 3)
    np.testing.assert_array_equal(crop, img[5:25, 10:40])


def test_rotated_quad_rectifies_back_to_the_pattern():
    pat = _pattern(40, 120)
    th = np.deg2rad(30)
    # known homography: rotate the pattern by 30 degrees and move it onto a 260x220 canvas
    hom = np.array([[np.cos(th), -np.sin(th), 50], [np.sin(th), np.cos(th), 30], [0, 0, 1]])
    canvas = cv2.warpPerspective(pat, hom, (260, 220), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
    corners = np.array([[0, 0, 1], [120, 0, 1], [120, 40, 1], [0, 40, 1]], float) @ hom.T
    quad = corners[:, :2] / corners[:, 2:]
    crop = crop_quad(canvas, quad)
    assert crop.shape == pat.shape
    diff = np.abs(crop.astype(float) - pat).mean()
    assert diff < 3.0, diff  # measured ~1 gray level (two cubic resamplings)
    # the check discriminates: the same crop upside down is far off
    assert np.abs(crop[::-1, ::-1].astype(float) - pat).mean() > 30


def test_any_point_order_gives_the_same_crop():
    img = _pattern(120, 160, seed=2)
    quad = np.array([[30.0, 40.0], [110.0, 22.0], [118.0, 52.0], [36.0, 71.0]])
    ref = crop_quad(img, quad)
    assert ref.shape[1] > ref.shape[0]  # the long edge is the top edge: no rotation
    for start, step in itertools.product(range(4), (1, -1)):  # every start corner, both windings
        order = [(start + step * k) % 4 for k in range(4)]
        np.testing.assert_array_equal(crop_quad(img, quad[order]), ref)
    for perm in ([0, 2, 1, 3], [1, 3, 2, 0]):  # not even a polygon walk in the gt
        np.testing.assert_array_equal(crop_quad(img, quad[perm]), ref)
    # keep_gt_start: the gt's first point is the top-left, only the winding is fixed
    flipped = crop_quad(img, quad[[2, 3, 0, 1]], keep_gt_start=True)
    assert flipped.shape == ref.shape
    assert crop_quad(img, quad[[2, 1, 0, 3]], keep_gt_start=True).shape == ref.shape
    # rotating it back shifts pixel centres by one: flipped pixel (u, v) samples ref's (w - u, h - v)
    assert np.abs(flipped[::-1, ::-1][:-1, :-1].astype(float) - ref[1:, 1:]).mean() < 3.0


def test_vertical_word_is_rotated_counter_clockwise():
    img = np.random.default_rng(3).integers(0, 256, (100, 60, 3)).astype(np.uint8)
    crop = crop_quad(img, _rect(20, 10, 32, 70))  # 12 wide, 60 high: h / w >= 1.5
    assert crop.shape == (12, 60, 3)
    np.testing.assert_array_equal(crop, np.rot90(img[10:70, 20:32]))
    assert crop_quad(img, _rect(20, 10, 32, 27)).shape == (17, 12, 3)  # h / w < 1.5 stays upright


def test_degenerate_quads():
    assert is_degenerate([[5, 5], [5, 5], [5, 5], [5, 5]])
    assert is_degenerate([[0, 0], [10, 0], [20, 0], [30, 0]])  # collinear: zero area
    assert is_degenerate([[0, 0], [10, 0], [0, 10], [10, 10]])  # bow tie: edges cross
    assert not is_degenerate([[0, 0], [0, 10], [10, 10], [10, 0]])  # counter-clockwise is fine


# ------------------------------------------------------------------------------------ crop_words
def test_crop_words_writes_crops_and_counts_every_skip_reason(tmp_path):
    imgs, gt, out = tmp_path / "imgs", tmp_path / "gt", tmp_path / "out"
    imgs.mkdir()
    gt.mkdir()
    img = _pattern(100, 200, seed=4)
    _write_png(imgs / "img_1.png", img)
    lines = [
        _line(_rect(10, 10, 60, 30), 'Hello, "x"'),  # kept: word_1
        _line(_rect(70, 10, 120, 30), "###"),  # don't care
        _line(_rect(10, 40, 60, 60), ""),  # empty text
        _line(_rect(10, 40, 60, 60), "  "),  # blank text
        _line([[0, 0], [10, 0], [0, 10], [10, 10]], "bow"),  # degenerate: self-intersecting
        _line([[5, 5], [30, 5], [50, 5], [70, 5]], "flat"),  # degenerate: no area
        _line(_rect(100, 50, 103, 80), "tiny"),  # 3 px wide < min_size 4
        _line(_rect(150, 70, 260, 90), "outside"),  # 50 of 110 px inside
        _line(_rect(140, 70, 230, 90), "edge"),  # 60 of 90 px inside: kept as word_2
    ]
    (gt / "gt_img_1.txt").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    (gt / "gt_img_2.txt").write_text(_line(_rect(1, 1, 9, 9), "gone") + "\n" + _line(_rect(1, 1, 9, 9), "###"),
                                     encoding="utf-8")
    st = crop_words(str(gt), str(imgs), str(out), progress=False)
    assert (st.images, st.words) == (2, 2)
    assert st.skipped() == {"dont_care": 2, "empty_text": 2, "degenerate": 2, "too_small": 1, "outside": 1,
                            "missing_image": 1}
    assert st.missing_images == ["img_2.jpg"]
    rows = [parse_icdar_rec_line(t) for t in (out / "gt.txt").read_text(encoding="utf-8").splitlines()]
    assert rows == [("word_1.png", 'Hello, "x"'), ("word_2.png", "edge")]
    np.testing.assert_array_equal(cv2.imread(str(out / "word_1.png")), img[10:30, 10:60])
    assert cv2.imread(str(out / "word_2.png")).shape == (20, 90, 3)  # border replicated outside
    with pytest.raises(DataError, match="not empty"):
        crop_words(str(gt), str(imgs), str(out), progress=False)
    with pytest.raises(DataError, match="input"):
        crop_words(str(gt), str(imgs), str(imgs), progress=False, overwrite=True)


def test_crop_words_cli_bad_gt_line_exits_2_naming_the_file(tmp_path, capsys):
    imgs, gt = tmp_path / "imgs", tmp_path / "gt"
    imgs.mkdir()
    gt.mkdir()
    _write_png(imgs / "img_1.png", _pattern(40, 60))
    (gt / "gt_img_1.txt").write_text("1,1,30,1,30,15,1,15,ok\n1,1,30,x,30,15,1,15,bad\n", encoding="utf-8")
    rc = main(["crop-words", "--gt-dir", str(gt), "--image-dir", str(imgs), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "gt_img_1.txt:2" in err and "Traceback" not in err
    (gt / "gt_img_1.txt").write_text("1,1,30,1,30,15,1,15,ok\n1,1,3,1,3,3,1,3,tiny\n", encoding="utf-8")
    assert main(["crop-words", "--gt-dir", str(gt), "--image-dir", str(imgs), "--out", str(tmp_path / "o")]) == 0
    assert f"1 word crops from 1 images -> {tmp_path / 'o'} (skipped: 1 too_small)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ split_icdar
def _icdar_set(root, n=10):
    imgs, gt = root / "imgs", root / "gt"
    imgs.mkdir()
    gt.mkdir()
    for i in range(1, n + 1):
        _write_png(imgs / f"img_{i}.png", _pattern(48, 64, seed=i))
        (gt / f"gt_img_{i}.txt").write_text(
            _line(_rect(4, 4, 40, 20), f"w{i}") + "\n" + _line(_rect(4, 24, 40, 40), "###") + "\n"
            + _line(_rect(44, 4, 56, 44), f"v{i}") + "\n", encoding="utf-8")
    (imgs / "notes.txt").write_text("not an image")
    return imgs, gt


def test_split_is_the_documented_seeded_rule_and_writes_the_raw_layout(tmp_path, capsys):
    imgs, gt = _icdar_set(tmp_path)
    names = sorted(f"img_{i}.png" for i in range(1, 11))  # plain sort: img_1, img_10, img_2, ...
    want_test = {names[i] for i in np.random.default_rng(0).permutation(10)[:3]}
    info = split_icdar(str(imgs), str(gt), str(tmp_path / "raw"), test_count=3, seed=0, progress=False)
    raw = tmp_path / "raw"
    test = set(os.listdir(raw / "det/test/images"))
    train = set(os.listdir(raw / "det/train/images"))
    assert test == want_test and not test & train and test | train == set(names)
    assert set(os.listdir(raw / "det/test/gt")) == {f"gt_{n[:-4]}.txt" for n in want_test}
    saved = json.loads((raw / "split.json").read_text(encoding="utf-8"))
    assert saved == info and saved["test"] == sorted(want_test) and saved["train"] == sorted(train)
    assert saved["counts"] == {"images": 10, "train_images": 7, "test_images": 3, "train_words": 14,
                               "test_words": 6}
    assert saved["crop"]["test"]["dont_care"] == 3
    # the raw layout converts like the pipeline's convert_labels step does
    for split, n_img in (("train", 7), ("test", 3)):
        det = convert_det_gt_dir(str(raw / "det" / split / "gt"), str(raw / "det" / split / "images"),
                                 str(tmp_path / f"{split}_det.txt"), image_prefix=f"det/{split}/images")
        rec = convert_rec_gt(str(raw / "rec" / split / "gt.txt"), str(tmp_path / f"{split}_rec.txt"), f"rec/{split}")
        assert (det.files, det.boxes, det.missing_images) == (n_img, 3 * n_img, [])
        assert rec.lines == 2 * n_img
        assert all(os.path.isfile(raw / p.split("\t")[0])
                   for p in (tmp_path / f"{split}_rec.txt").read_text(encoding="utf-8").splitlines())
    # the vertical 12x40 word is rotated into a 40x12 crop
    assert cv2.imread(str(raw / "rec/test/word_2.png")).shape == (12, 40, 3)
    # same seed, same split (CLI, overwrite); another seed, another split
    assert main(["split-icdar", "--images", str(imgs), "--gt", str(gt), "--out", str(raw), "--test-count", "3",
                 "--overwrite", "--no-crop"]) == 0
    out = capsys.readouterr().out
    assert "train: 7 images" in out and "test: 3 images" in out and str(raw / "split.json") in out
    assert set(os.listdir(raw / "det/test/images")) == want_test and not (raw / "rec").exists()
    other = split_icdar(str(imgs), str(gt), str(tmp_path / "raw1"), test_count=3, seed=1, crop=False,
                        progress=False)
    assert set(other["test"]) == {names[i] for i in np.random.default_rng(1).permutation(10)[:3]}
    assert set(other["test"]) != want_test
    assert len(os.listdir(imgs)) == 11 and len(os.listdir(gt)) == 10  # inputs untouched


def test_split_link_and_jpeg_reencode(tmp_path):
    imgs, gt = _icdar_set(tmp_path, n=4)
    info = split_icdar(str(imgs), str(gt), str(tmp_path / "lnk"), test_count=1, link=True, crop=False,
                       progress=False)
    name = info["test"][0]
    assert os.stat(tmp_path / "lnk/det/test/images" / name).st_ino == os.stat(imgs / name).st_ino
    info = split_icdar(str(imgs), str(gt), str(tmp_path / "jpg"), test_count=1, jpeg_quality=90, progress=False)
    assert all(n.endswith(".jpg") for n in info["train"] + info["test"])
    img = cv2.imread(str(tmp_path / "jpg/det/train/images" / info["train"][0]))
    assert img is not None and img.shape == (48, 64, 3)
    assert info["counts"]["train_words"] == 6  # crops come from the original images


def test_split_refuses_bad_requests(tmp_path):
    imgs, gt = _icdar_set(tmp_path)
    for count in (0, 10):
        with pytest.raises(DataError, match="test count"):
            split_icdar(str(imgs), str(gt), str(tmp_path / "o"), test_count=count, progress=False)
    for out in (imgs, tmp_path, gt):  # equals or contains an input: refused even with overwrite
        with pytest.raises(DataError, match="input"):
            split_icdar(str(imgs), str(gt), str(out), test_count=3, overwrite=True, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        split_icdar(str(imgs), str(gt), str(tmp_path / "full"), test_count=3, progress=False)
    (gt / "gt_img_7.txt").unlink()
    with pytest.raises(DataError, match=r"img_7\.png"):
        split_icdar(str(imgs), str(gt), str(tmp_path / "o"), test_count=3, progress=False)
    assert len(os.listdir(imgs)) == 11 and len(os.listdir(gt)) == 9
