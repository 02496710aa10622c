"""Synthetic data: determinism by seed, ICDAR gt format, boxes on text, distinct domains, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_core.cli import main as cli
from ocr_core.data.icdar import read_icdar_det_gt
from ocr_core.data.synth import synth_det, synth_rec
from ocr_core.data.synth_text import CHARSET
from ocr_core.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_det_is_deterministic_by_seed_and_index(tmp_path: Path) -> None:
    synth_det(tmp_path / "a", 3, seed=5, size=(160, 128))
    synth_det(tmp_path / "b", 3, seed=5, size=(160, 128), workers=2)
    synth_det(tmp_path / "c", 5, seed=5, size=(160, 128))
    synth_det(tmp_path / "d", 3, seed=6, size=(160, 128))
    a, b, c, d = (_files(tmp_path / k) for k in "abcd")
    assert a == b  # workers do not change the output
    for name in ("images/img_2.jpg", "gt/gt_img_2.txt"):
        assert a[name] == c[name]  # sample i does not depend on num
        assert a[name] != d[name]


def test_icdar_gt_format_and_boxes_cover_text(tmp_path: Path) -> None:
    synth_det(tmp_path, 6, seed=1, domain="mixed", size=(320, 256))
    n_checked = 0
    for i in range(6):
        raw = (tmp_path / "gt" / f"gt_img_{i}.txt").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
        img = cv2.imread(str(tmp_path / "images" / f"img_{i}.jpg"), cv2.IMREAD_GRAYSCALE)
        for box in read_icdar_det_gt(str(tmp_path / "gt" / f"gt_img_{i}.txt")):
            pts = np.asarray(box.points, dtype=np.int32)
            assert pts.shape == (4, 2)
            assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= 320).all()
            assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= 256).all()
            if box.transcription == "###":
                continue
            assert set(box.transcription) <= set(CHARSET)
            mask = np.zeros_like(img)
            cv2.fillPoly(mask, [pts], 1)
            inside = img[mask > 0].astype(np.float32)
            # text strokes make the inside of a word box far from uniform
            assert inside.std() > 12, (i, box.transcription, inside.std())
            n_checked += 1
    assert n_checked >= 6


def test_texts_with_commas_survive_the_gt_round_trip(tmp_path: Path) -> None:
    synth_det(tmp_path, 12, seed=2, domain="sign", size=(320, 256))
    texts = [b.transcription for i in range(12) for b in read_icdar_det_gt(str(tmp_path / "gt" / f"gt_img_{i}.txt"))]
    assert any("," in t for t in texts) and any(" " in t for t in texts)


def test_domains_look_different(tmp_path: Path) -> None:
    synth_det(tmp_path / "r", 6, seed=0, domain="receipt", size=(160, 128))
    synth_det(tmp_path / "s", 6, seed=0, domain="sign", size=(160, 128))

    def saturation(root: Path) -> float:
        ims = [cv2.imread(str(p)) for p in sorted((root / "images").glob("*.jpg"))]
        return float(np.mean([cv2.cvtColor(im, cv2.COLOR_BGR2HSV)[..., 1].mean() for im in ims]))

    # receipts are paper-grey, signs are colourful
    assert saturation(tmp_path / "s") > saturation(tmp_path / "r") + 20


def test_rec_crops_and_labels(tmp_path: Path) -> None:
    synth_rec(tmp_path, 40, seed=3, domain="mixed")
    lines = (tmp_path / "rec_gt.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40
    for line in lines:
        path, text = line.split("\t", 1)
        assert text and set(text) <= set(CHARSET) and len(text) <= 25
        img = cv2.imread(str(tmp_path / path))
        assert 32 <= img.shape[0] <= 64 and img.shape[1] >= 8
    assert any(" " in line.split("\t", 1)[1] for line in lines)


def test_cli_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["synth", "det", "--out", str(tmp_path / "d"), "--num", "2", "--size", "96x64"]) == 0
    assert "wrote 2 sign images" in capsys.readouterr().out
    assert cli(["synth", "det", "--out", str(tmp_path / "d"), "--num", "2"]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    assert cli(["synth", "rec", "--out", str(tmp_path / "r"), "--num", "3", "--domain", "receipt"]) == 0
    with pytest.raises(DataError):
        synth_det(tmp_path / "x", 0)


def test_dotmatrix_domain_prints_text_in_dots(tmp_path: Path) -> None:
    synth_rec(tmp_path / "r", 8, seed=4, domain="dotmatrix")
    lines = (tmp_path / "r" / "rec_gt.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and all(set(ln.split("\t", 1)[1]) <= set(CHARSET) for ln in lines)
    synth_det(tmp_path / "d", 2, seed=4, domain="dotmatrix", size=(320, 256))
    assert sum(len(read_icdar_det_gt(str(p))) for p in (tmp_path / "d" / "gt").glob("*.txt")) >= 4
    from ocr_core.data.synth_render import dot_matrix

    bar = np.zeros((18, 30), np.float32)
    bar[0:12, 6:30] = 1
    dots = dot_matrix(bar, 6)  # a solid 12x24 block on the 6-px grid becomes 2x4 separate round dots
    n, _ = cv2.connectedComponents((dots > 0.5).astype(np.uint8))
    assert n - 1 == 8 and dots[2, 8] > 0.9 and dots[0, 6] < 0.1  # dot centre inked, cell corner not
