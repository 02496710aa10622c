"""A small raw labelled dataset in ICDAR layout, rendered synthetically (demo and tests).

Layout (what the pipeline's ``ingest`` expects; see ``components/steps/data.py``)::

    det/{train,test}/images/img_<n>.jpg   det/{train,test}/gt/gt_img_<n>.txt   (ICDAR2015 det gt)
    rec/{train,test}/word_<n>.png         rec/{train,test}/gt.txt              (ICDAR word gt)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr_core.data.icdar import format_icdar_det_line, format_icdar_rec_line
from ocr_core.data.label_io import DetBox


def make_raw_dataset(out: str | Path, det_train: int = 4, det_test: int = 2, rec_train: int = 16,
                     rec_test: int = 8, seed: int = 0, size: tuple[int, int] = (320, 256),
                     domain: str = "sign") -> Path:
    """Render det images and word crops with ground truth into ``out``; returns ``out``."""
    import cv2

    from ocr_core.data.synth_scenes import render_det_sample, render_word

    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, n in (("train", det_train), ("test", det_test)):
        (out / "det" / split / "images").mkdir(parents=True, exist_ok=True)
        (out / "det" / split / "gt").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, quads = render_det_sample(rng, domain, size)
            cv2.imwrite(str(out / "det" / split / "images" / f"img_{i + 1}.jpg"), img)
            lines = [format_icdar_det_line(DetBox("###" if dc else text, np.asarray(q).tolist()))
                     for q, text, dc in quads]
            (out / "det" / split / "gt" / f"gt_img_{i + 1}.txt").write_text("\n".join(lines) + "\n",
                                                                            encoding="utf-8")
    for split, n in (("train", rec_train), ("test", rec_test)):
        d = out / "rec" / split
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            crop, text = render_word(rng, domain)
            cv2.imwrite(str(d / f"word_{i + 1}.png"), crop)
            lines.append(format_icdar_rec_line(f"word_{i + 1}.png", text))
        (d / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
