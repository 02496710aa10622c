"""DB post-process speed: ours vs PaddleOCR's ``DBPostProcess`` on identical probability maps.

Usage (repo root)::

    .venv/bin/python bench/postprocess.py                       # ours only (says so)
    .venv/bin/python bench/postprocess.py --paddleocr-src /work/scratch/paddleocr --repeats 7

``--paddleocr-src`` is a PaddleOCR release/2.10 source checkout kept OUTSIDE this repository;
only its ``ppocr/postprocess/db_postprocess.py`` is loaded (it needs numpy, cv2, shapely and
pyclipper; when paddlepaddle is not importable a stub ``paddle`` module with a ``Tensor`` type
stands in, since the file only uses ``paddle.Tensor`` for an isinstance check).

Maps: synthetic DB shrink maps (rotated text-like blobs with soft edges, values 0.5-0.95, plus
low background noise that crosses the threshold in small specks, as an under-trained model's
maps do), fixed seeds, at several sizes. Both implementations get the very same arrays and the
same float64 ``shape_list`` (what DetResizeForTest produces). Timing interleaves ours and theirs
in one process, round-robin, ``--repeats`` times, as per-thread CPU time (cv2 limited to one
thread); the table shows medians. The boxes are checked
identical (points exactly, scores to 1e-6) before anything is timed; a mismatch exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocr_core.postprocess.db_postprocess import DBPostProcess  # noqa: E402

# (name, height, width, number of text blobs)
SIZES = [("640x640", 640, 640, 60), ("736x1280", 736, 1280, 150), ("960x960", 960, 960, 200)]
VARIANTS = [  # (label, kwargs)
    ("quad", {"box_type": "quad"}),
    ("quad+dilation", {"box_type": "quad", "use_dilation": True}),
    ("quad slow-score", {"box_type": "quad", "score_mode": "slow"}),
    ("poly", {"box_type": "poly"}),
    ("poly+dilation", {"box_type": "poly", "use_dilation": True}),
]
COMMON = {"thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5}


def make_maps(height: int, width: int, n_blobs: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """``[batch, 1, H, W]`` float32 maps with up to ``n_blobs`` word-like regions on text lines."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(batch):
        noise = rng.random((height // 4, width // 4), dtype=np.float32) * 0.34
        prob = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
        placed, y = 0, 6.0
        while placed < n_blobs and y < height - 30:
            line_h, x = rng.uniform(6, 22), rng.uniform(2, 40)
            while placed < n_blobs and x < width - 40:
                w = rng.uniform(10, 160)
                angle = rng.uniform(-4, 4)
                pts = cv2.boxPoints(((x + w / 2, y + line_h / 2), (w, line_h), angle))
                cv2.fillPoly(prob, [np.round(pts).astype(np.int32)], float(rng.uniform(0.45, 0.97)))
                x += w + rng.uniform(8, 60)
                placed += 1
            y += line_h + rng.uniform(10, 40)
        xs = np.linspace(width * 0.1, width * 0.9, 12)  # one curved region for poly mode
        ys = height * 0.5 + np.sin(np.linspace(0, 3, 12)) * height * 0.1
        top = np.stack([xs, ys - 8], 1)
        cv2.fillPoly(prob, [np.round(np.concatenate([top, top[::-1] + [0, 16]])).astype(np.int32)], 0.9)
        maps.append(cv2.GaussianBlur(prob, (5, 5), 1.0))
    return np.stack(maps)[:, None].astype(np.float32)


def load_paddle_db(src: Path):
    """PaddleOCR's DBPostProcess class from ``src/ppocr/postprocess/db_postprocess.py``."""
    path = src / "ppocr" / "postprocess" / "db_postprocess.py"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --paddleocr-src must be a PaddleOCR source checkout")
    stub = None
    if importlib.util.find_spec("paddle") is None:
        stub = types.ModuleType("paddle")
        stub.Tensor = type("Tensor", (), {})  # only used in an isinstance check
        sys.modules["paddle"] = stub
    spec = importlib.util.spec_from_file_location("paddleocr_db_postprocess", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DBPostProcess, stub is not None


def _normalize(result: dict) -> list[np.ndarray]:
    return [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in result["points"]]


def check_identical(ours: list[dict], theirs: list[dict], label: str) -> int:
    """Compare per-image point sets exactly; return the number of boxes compared."""
    n = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        pa, pb = _normalize(a), _normalize(b)
        if len(pa) != len(pb) or any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(pa, pb)):
            raise SystemExit(f"MISMATCH {label} image {i}: ours {len(pa)} boxes, PaddleOCR {len(pb)}")
        n += len(pa)
    return n


def time_call(fn, maps: np.ndarray, shapes: np.ndarray) -> float:
    """CPU time of this thread (both implementations are single-threaded here), which other
    processes on a shared machine disturb far less than wall time."""
    t0 = time.thread_time()
    fn({"maps": maps}, shapes)
    return time.thread_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paddleocr-src", type=Path, default=None, help="PaddleOCR release/2.10 source tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(s[0] for s in SIZES), help="subset of " + ",".join(s[0] for s in SIZES))
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)  # dilate may thread; keep both sides single-threaded

    theirs_cls, stubbed = (None, False)
    if args.paddleocr_src is not None:
        theirs_cls, stubbed = load_paddle_db(args.paddleocr_src)
        print(f"PaddleOCR: {args.paddleocr_src}/ppocr/postprocess/db_postprocess.py"
              + (" (paddle not installed: stub paddle.Tensor)" if stubbed else ""))
    else:
        print("No --paddleocr-src: printing OCRFlow's times only (no peer measured).")
    wanted = set(args.sizes.split(","))
    print(f"batch {args.batch}, {COMMON}, median of {args.repeats} interleaved repeats\n")
    header = f"| map | variant | boxes | ours ms/img | {'PaddleOCR ms/img | speed-up |' if theirs_cls else ''}"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    speedups = []
    for name, h, w, blobs in SIZES:
        if name not in wanted:
            continue
        maps = make_maps(h, w, blobs, args.batch, seed=h + w)
        shapes = np.array([[h, w, 1.0, 1.0]] * args.batch, dtype=np.float64)
        for label, kw in VARIANTS:
            ours = DBPostProcess(**COMMON, **kw)
            theirs = theirs_cls(**COMMON, **kw) if theirs_cls else None
            out = ours({"maps": maps}, shapes)
            n_boxes = sum(len(o["points"]) for o in out)
            if theirs is not None:
                n_boxes = check_identical(out, theirs({"maps": maps}, shapes), f"{name} {label}")
            t_ours, t_theirs = [], []
            for _ in range(args.repeats):
                t_ours.append(time_call(ours, maps, shapes))
                if theirs is not None:
                    t_theirs.append(time_call(theirs, maps, shapes))
            mo = statistics.median(t_ours) * 1000 / args.batch
            row = f"| {name} | {label} | {n_boxes} | {mo:.2f} |"
            if theirs is not None:
                mt = statistics.median(t_theirs) * 1000 / args.batch
                speedups.append(mt / mo)
                row += f" {mt:.2f} | {mt / mo:.2f}x |"
            print(row, flush=True)
    if speedups:
        print(f"\nboxes identical in every row; speed-up min {min(speedups):.2f}x, "
              f"median {statistics.median(speedups):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
