"""Synthetic det/rec datasets on disk: our stand-in for ICDAR2015 in tests, CI and demos.

* det: ``OUT/images/img_{i}.jpg`` + ICDAR2015-format ground truth ``OUT/gt/gt_img_{i}.txt``
  written like the official files (UTF-8 with BOM, CRLF, ``x1,y1,...,x4,y4,text``, ``###`` for
  don't-care), so label conversion is exercised; plus ``OUT/meta.json``.
* rec: ``OUT/images/word_{i}.png`` + a PaddleOCR rec label file ``OUT/rec_gt.txt``
  (``images/word_{i}.png\\t<text>``, spaces kept); plus ``OUT/meta.json``.

Every sample is a pure function of ``(seed, index)``: sample *i* is byte-identical whatever
``num`` or ``workers`` is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr_core.data.synth_scenes import DOMAINS, render_det_sample, render_word
from ocr_core.errors import DataError
from ocr_core.progress import progress

VERSION = 1
JPEG_QUALITY = 92


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def _prepare(out_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: output directory is not empty (pass overwrite=True / --overwrite)")
    (out / "images").mkdir(parents=True, exist_ok=True)
    return out


def _icdar_line(quad: np.ndarray, text: str) -> str:
    pts = ",".join(str(int(v)) for v in np.asarray(quad).reshape(-1))
    return f"{pts},{text}"


def _det_one(args: tuple[str, int, int, str, tuple[int, int]]) -> tuple[int, int]:
    out, seed, i, domain, size = args
    img, boxes = render_det_sample(_rng(seed, i), domain, size)
    cv2.imwrite(os.path.join(out, "images", f"img_{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    lines = [_icdar_line(q, "###" if dc else t) for q, t, dc in boxes]
    with open(os.path.join(out, "gt", f"gt_img_{i}.txt"), "w", encoding="utf-8-sig", newline="") as fh:
        fh.write("".join(line + "\r\n" for line in lines))
    return len(boxes), sum(bool(dc) for _, _, dc in boxes)


def _rec_one(args: tuple[str, int, int, str]) -> tuple[int, str]:
    out, seed, i, domain = args
    img, text = render_word(_rng(seed, i), domain)
    cv2.imwrite(os.path.join(out, "images", f"word_{i}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return i, text


def _run(fn: Callable[[Any], Any], jobs: list[Any], workers: int, desc: str) -> list[Any]:
    if workers <= 1:
        return [fn(j) for j in progress(jobs, desc=desc, unit="img")]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(progress(pool.map(fn, jobs, chunksize=8), total=len(jobs), desc=desc, unit="img"))


def _check(num: int, domain: str) -> None:
    if num < 1:
        raise DataError(f"num must be >= 1, got {num}")
    if domain not in DOMAINS:
        raise DataError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")


def synth_det(out_dir: str | os.PathLike[str], num: int, seed: int = 0, domain: str = "sign",
              size: tuple[int, int] = (640, 480), workers: int = 1, overwrite: bool = False) -> dict[str, Any]:
    """Render ``num`` detection images with ICDAR2015-style ground truth; returns summary stats."""
    _check(num, domain)
    out = _prepare(out_dir, overwrite)
    (out / "gt").mkdir(exist_ok=True)
    size = (int(size[0]), int(size[1]))
    results = _run(_det_one, [(str(out), seed, i, domain, size) for i in range(num)], workers, f"synth det {domain}")
    stats = {"kind": "det", "domain": domain, "seed": seed, "num": num, "size": list(size),
             "boxes": int(sum(r[0] for r in results)), "dont_care": int(sum(r[1] for r in results)),
             "version": VERSION}
    (out / "meta.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    return stats


def synth_rec(out_dir: str | os.PathLike[str], num: int, seed: int = 0, domain: str = "sign",
              workers: int = 1, overwrite: bool = False) -> dict[str, Any]:
    """Render ``num`` word crops and a PaddleOCR rec label file; returns summary stats."""
    _check(num, domain)
    out = _prepare(out_dir, overwrite)
    results = _run(_rec_one, [(str(out), seed, i, domain) for i in range(num)], workers, f"synth rec {domain}")
    results.sort()
    with open(out / "rec_gt.txt", "w", encoding="utf-8", newline="\n") as fh:
        for i, text in results:
            fh.write(f"images/word_{i}.png\t{text}\n")
    lengths = [len(t) for _, t in results]
    stats = {"kind": "rec", "domain": domain, "seed": seed, "num": num,
             "chars": int(sum(lengths)), "max_len": int(max(lengths)), "version": VERSION}
    (out / "meta.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    return stats
