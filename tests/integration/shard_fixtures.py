"""Synthetic image sets for the shard tests (tests/unit/test_shards.py, tests/integration/test_shards_s3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def make_set(root: Path, n: int, mode: str, seed: int = 0, bad_lines: int = 0) -> Path:
    """``n`` random images in ``root/imgs`` (PNG and JPEG, various sizes) and ``root/label.txt``."""
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True)
    lines = []
    for i in range(n):
        h, w = (int(rng.integers(24, 48)), int(rng.integers(60, 120))) if mode == "rec" else (64, 96)
        img = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                         interpolation=cv2.INTER_NEAREST)  # blocky: small files, many per shard
        ext = ".png" if i % 3 else ".jpg"
        cv2.imwrite(str(root / "imgs" / f"im{i}{ext}"), img)
        if mode == "rec":
            label = "".join(rng.choice(list("abcdef0123")) for _ in range(int(rng.integers(2, 7))))
        else:
            x, y = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            label = json.dumps([{"transcription": f"w{i}", "points": [[x, y], [x + 40, y], [x + 40, y + 20],
                                                                      [x, y + 20]]}])
        lines.append(f"imgs/im{i}{ext}\t{label}")
    lines += ["no tab here"] * bad_lines
    (root / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "label.txt"
