"""Decompression bombs (#15 item 5): a small file declaring a huge image is refused from its header.

The fixtures are real files: a PNG that declares 20000 x 20000 (IHDR only, ~60 bytes, built by hand
with zlib CRCs) and an ordinary small image. The limit is lowered through the environment for the
small-image cases so no test decodes anything big.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_core.data import image_io
from ocr_core.data.label_io import LineError
from ocr_core.data.simple_dataset import SimpleDataSet
from ocr_core.data.validate import read_image_size


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A PNG whose header declares ``width x height`` (8-bit RGB); its image data is one empty row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00"))
                     + chunk(b"IEND", b""))
    return path


def small_png(path: Path, w: int = 40, h: int = 30) -> Path:
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 128, np.uint8))
    path.write_bytes(buf.tobytes())
    return path


def test_header_size_reads_the_declared_size_without_decoding(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100
    assert image_io.header_size(bomb) == (20000, 20000)
    assert image_io.header_size(bomb.read_bytes()) == (20000, 20000)
    assert image_io.header_size(b"not an image") is None


def test_limit_default_env_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    monkeypatch.delenv(image_io.ENV, raising=False)
    assert image_io.max_pixels() == 40_000_000
    with pytest.raises(image_io.ImageTooLarge, match="20000x20000 = 400.0 MP, above the 40 MP limit"):
        image_io.read(bomb)
    small = small_png(tmp_path / "s.png")
    monkeypatch.setenv(image_io.ENV, "1000")  # 40x30 = 1200 px > 1000
    with pytest.raises(image_io.ImageTooLarge):
        image_io.read(small)
    monkeypatch.setenv(image_io.ENV, "0")
    assert image_io.read(small).shape == (30, 40, 3)
    monkeypatch.setenv(image_io.ENV, "lots")
    with pytest.raises(ValueError, match="OCRFLOW_MAX_IMAGE_PIXELS must be a number"):
        image_io.max_pixels()


def test_validator_reports_it_as_a_line_error(tmp_path: Path) -> None:
    with pytest.raises(LineError) as err:
        read_image_size(str(bomb_png(tmp_path / "bomb.png")))
    assert err.value.code == "too_large"


def test_datasets_skip_and_count_it(tmp_path: Path) -> None:
    bomb_png(tmp_path / "bomb.png")
    small_png(tmp_path / "ok.png")
    (tmp_path / "label.txt").write_text("bomb.png\tbig\nok.png\tsmall\n", encoding="utf-8")
    ops = [{"DecodeImage": {"img_mode": "BGR"}}, {"KeepKeys": {"keep_keys": ["image", "label"]}}]
    ev = SimpleDataSet(data_dir=str(tmp_path), label_file_list=str(tmp_path / "label.txt"), mode="eval",
                       transforms=ops)
    assert ev[0] is None and ev.stats["rejected"] == 1  # eval: excluded and counted
    assert ev[1][1] == "small"
    tr = SimpleDataSet(data_dir=str(tmp_path), label_file_list=str(tmp_path / "label.txt"), mode="train",
                       transforms=ops, seed=0)
    assert all(tr[0][1] == "small" for _ in range(3))  # train: another sample instead


def test_predict_refuses_it_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocr_core.cli import main
    from tests.unit.test_export_metadata import det_meta, toy_det_model

    model = toy_det_model(tmp_path / "det" / "model.onnx", det_meta())
    bomb = bomb_png(tmp_path / "bomb.png")
    rc = main(["predict", "--model", str(model.parent), "--image", str(bomb)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "bomb.png: image is 20000x20000 = 400.0 MP, above the 40 MP limit" in err


def test_cli_flag_sets_the_limit_for_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from ocr_core.cli import main

    monkeypatch.delenv(image_io.ENV, raising=False)
    small_png(tmp_path / "ok.png")  # 40 x 30 = 1200 px
    (tmp_path / "label.txt").write_text("ok.png\tsmall\n", encoding="utf-8")
    argv = ["validate-data", "--mode", "rec", "--label-file", str(tmp_path / "label.txt"), "--data-dir",
            str(tmp_path), "--json", str(tmp_path / "r.json")]
    assert main([*argv, "--max-image-pixels", "1000"]) == 0
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert [e["code"] for e in report["errors"]] == ["too_large"]
    assert "40x30" in report["errors"][0]["reason"] and "--max-image-pixels" in report["errors"][0]["reason"]
    assert image_io.ENV not in __import__("os").environ  # one run only: main() restores the environment
    assert main([*argv, "--max-image-pixels", "1200"]) == 0
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["errors"] == []
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--max-image-pixels", "-5"])
    assert exc.value.code == 2 and "--max-image-pixels: must be >= 0, got -5" in capsys.readouterr().err


def test_decode_transform_names_the_file(tmp_path: Path) -> None:
    from ocr_core.data.transforms.common import DecodeImage
    from ocr_core.errors import DataError

    bomb = bomb_png(tmp_path / "bomb.png")
    with pytest.raises(DataError) as err:  # what `ocrflow infer` prints for it
        DecodeImage(img_mode="BGR")({"img_path": str(bomb), "image": bomb.read_bytes()})
    assert str(err.value).startswith(f"{bomb}: image is 20000x20000")


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_jpeg_and_bmp_bombs_are_read_from_the_header(tmp_path: Path, ext: str) -> None:
    """A JPEG whose SOF0 (or a BMP whose info header) declares 20000 x 20000: a few hundred bytes."""
    import struct

    ok, buf = cv2.imencode(ext, np.full((30, 40, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    if ext == ".jpg":
        struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, 20000, 20000)  # height, width
    else:
        struct.pack_into("<ii", data, 18, 20000, 20000)  # BITMAPINFOHEADER width, height
    path = tmp_path / f"bomb{ext}"
    path.write_bytes(bytes(data))
    assert path.stat().st_size < 4000  # 40 x 30 pixels of real data
    with pytest.raises(image_io.ImageTooLarge, match="20000x20000 = 400.0 MP"):
        image_io.read(path)
