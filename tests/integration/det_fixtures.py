"""Synthetic ICDAR-style det datasets and small det configs for integration tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ocr_core.config import load_config
from ocr_core.data.icdar import convert_det_gt_dir
from ocr_core.data.label_io import format_det_label, format_label_line
from ocr_core.data.synth import synth_det
from ocr_core.data.synth_render import (
    SIGN_FONTS,
    background,
    blend,
    contrast_color,
    get_font,
    hsv,
    pick_font,
    text_mask,
)

ROOT = Path(__file__).resolve().parents[2]


def make_det_split(out: Path, num: int, seed: int, domain: str = "sign", size: tuple[int, int] = (320, 256)) -> Path:
    """Render ``num`` images, convert their ICDAR gt, return the PaddleOCR label file."""
    synth_det(str(out), num=num, seed=seed, domain=domain, size=size)
    label = out / "label.txt"
    convert_det_gt_dir(str(out / "gt"), str(out / "images"), str(label), image_prefix="images")
    return label


GLYPHS = "0123456789ABCDEFGHKMNPRSTUXYZ"


def make_glyph_split(out: Path, num: int, seed: int, size: tuple[int, int] = (128, 128),
                     text_px: tuple[int, int] = (22, 34), max_chars: int = 3, max_boxes: int = 3) -> Path:
    """An easy det set: 1..``max_boxes`` upright strings of 1..``max_chars`` digits/capitals.

    Each image (``size`` = (w, h)) has a plain or gradient background and large type
    (``text_px`` font sizes); each box is the tight axis-aligned ink box. Writes
    ``out/images/img_{i}.jpg`` and the PaddleOCR label file ``out/label.txt`` (returned); image
    *i* depends only on ``(seed, i)``. Short, big, upright text is what a from-scratch EAST can
    learn to box in a CI-sized run; the scene renderer of :func:`make_det_split` is far harder.
    """
    w, h = size
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        bg_col = hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.1, 0.95))
        canvas = background(rng, h, w, bg_col, "gradient" if rng.random() < 0.5 else "solid")
        want = int(rng.integers(1, max_boxes + 1))
        boxes: list[dict] = []
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(4 * max_boxes):
            if len(boxes) >= want:
                break
            text = "".join(rng.choice(list(GLYPHS), int(rng.integers(1, max_chars + 1))))
            font = get_font(pick_font(rng, SIGN_FONTS), int(rng.integers(text_px[0], text_px[1] + 1)))
            fill, _, (x0, y0, x1, y1) = text_mask(text, font)
            bw, bh = x1 - x0, y1 - y0
            if bw > w - 8 or bh > h - 8:
                continue
            px, py = int(rng.integers(4, w - 4 - bw + 1)), int(rng.integers(4, h - 4 - bh + 1))
            rect = (px - 3, py - 3, px + bw + 3, py + bh + 3)
            if any(rect[0] <= r[2] and r[0] <= rect[2] and rect[1] <= r[3] and r[1] <= rect[3] for r in taken):
                continue
            taken.append(rect)
            blend(canvas, fill, contrast_color(rng, bg_col, 110), px - x0, py - y0)
            boxes.append({"transcription": text,
                          "points": [[px, py], [px + bw, py], [px + bw, py + bh], [px, py + bh]]})
        name = f"images/img_{i}.jpg"
        cv2.imwrite(str(out / name), np.clip(canvas, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines.append(format_label_line(name, format_det_label(boxes)))
    label = out / "label.txt"
    label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return label


def det_config(train_dir: Path, eval_dir: Path, save_dir: Path, *extra: str,
               config: str = "configs/det/det_mv3_db.yml", crop: int = 256, batch: int = 4,
               epochs: int = 1) -> dict:
    """A shipped det config pointed at synthetic data, sized for a CPU test."""
    overrides = [
        f"Global.save_model_dir={save_dir}",
        f"Global.epoch_num={epochs}",
        "Global.use_gpu=false",
        "Global.print_batch_step=5",
        "Global.eval_batch_step=[0, 100000]",
        "Global.save_epoch_step=1000",
        "Global.seed=7",
        f"Train.dataset.data_dir={train_dir}",
        f"Train.dataset.label_file_list=[{train_dir / 'label.txt'}]",
        f"Train.dataset.transforms.EastRandomCropData.size=[{crop}, {crop}]",
        f"Train.loader.batch_size_per_card={batch}",
        "Train.loader.num_workers=0",
        f"Eval.dataset.data_dir={eval_dir}",
        f"Eval.dataset.label_file_list=[{eval_dir / 'label.txt'}]",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 320, limit_type: max}",
        "Eval.loader.num_workers=0",
        *extra,
    ]
    return load_config(ROOT / config, overrides)
