"""DB and EAST post-process speed: ours vs PaddleOCR's on identical maps.

Usage (repo root)::

    .venv/bin/python bench/postprocess.py                       # ours only (says so)
    .venv/bin/python bench/postprocess.py --paddleocr-src /work/scratch/paddleocr \
        --lanms-path /work/scratch/lanms-nova --repeats 7

``--paddleocr-src`` is a PaddleOCR release/2.10 source checkout kept OUTSIDE this repository.

**DB**: only its ``ppocr/postprocess/db_postprocess.py`` is loaded (it needs numpy, cv2, shapely
and pyclipper; when paddlepaddle is not importable a stub ``paddle`` module with a ``Tensor`` type
stands in, since the file only uses ``paddle.Tensor`` for an isinstance check). Maps: synthetic DB
shrink maps (rotated text-like blobs with soft edges, values 0.5-0.95, plus low background noise
that crosses the threshold in small specks, as an under-trained model's maps do), fixed seeds, at
several sizes, with the same float64 ``shape_list`` (what DetResizeForTest produces). The boxes are
checked identical (points exactly) before anything is timed; a mismatch exits 1.

**EAST**: ``ppocr/postprocess/east_postprocess.py`` and ``locality_aware_nms.py`` are loaded
with stubs for ``paddle`` (the isinstance check) and ``ppocr.utils.utility.check_install``: the
real one pip-installs lanms-nova on first use; the stub succeeds when ``lanms`` is importable
(``--lanms-path``: a directory holding lanms-nova, e.g. ``pip install --target DIR lanms-nova``)
and fails otherwise, which sends PaddleOCR to its pure-Python shapely fallback, as a failed install
does. Both peers are timed when lanms is there. Maps: synthetic stride-4 score/geometry maps of
words on text lines (tilted up to 6 degrees, 14-44 px high, inside the image), score 0.86-0.99 in
each word's shrunk core, geometry = the word's corners plus Gaussian noise (1 px "clean", 3 px
"noisy"), a few background specks over the threshold. Against the shapely fallback the points must
be identical; lanms rounds coordinates to a 1e-4 px integer grid and merges in int64/float32, so
against it the boxes must pair up one to one with every vertex within 1 px (and the bench prints
how many differ at all); otherwise it exits 1.

Timing interleaves ours and theirs in one process, round-robin, ``--repeats`` times, as
per-thread CPU time (cv2 limited to one thread); the tables show medians per map.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import statistics
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocr_core.postprocess.db_postprocess import DBPostProcess  # noqa: E402
from ocr_core.postprocess.east_postprocess import EASTPostProcess  # noqa: E402

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
EAST_VARIANTS = [("clean (1 px)", 1.0), ("noisy (3 px)", 3.0)]  # (label, geometry noise sigma in px)
EAST_COMMON = {"score_thresh": 0.8, "cover_thresh": 0.1, "nms_thresh": 0.2}  # PaddleOCR's defaults


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


def make_east_maps(height: int, width: int, n_words: int, batch: int = 2, seed: int = 0,
                   noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """EAST head outputs for an ``height x width`` input: score ``[B, 1, h/4, w/4]`` and geometry
    ``[B, 8, h/4, w/4]`` (per pixel: its position * 4 minus each corner), float32."""
    rng = np.random.default_rng(seed)
    h4, w4 = height // 4, width // 4
    ys, xs = np.mgrid[0:h4, 0:w4].astype(np.float64)
    scores, geos = [], []
    for _ in range(batch):
        score = cv2.resize(rng.random((h4 // 4 + 1, w4 // 4 + 1), dtype=np.float32) * 0.5, (w4, h4))
        # background: a small box around each pixel (corners = position * 4 - geometry)
        geo = np.array([1, 1, -1, 1, -1, -1, 1, -1.0])[:, None, None] * rng.uniform(3, 8, (h4, w4))
        placed, y = 0, 20.0
        while placed < n_words:  # every quad stays inside the image (see check_east)
            line_h, x = rng.uniform(14, 44), rng.uniform(12, 40)
            if y + line_h + 20 > height:
                break
            angle = np.deg2rad(rng.uniform(-6, 6))
            rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
            while placed < n_words and x < width - 60:
                word_w = rng.uniform(30, 260)
                if x + word_w > width - 16:
                    break
                half = np.array([word_w / 2, line_h / 2])
                centre = np.array([x, y]) + half
                quad = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ rot + centre
                # word frame: |u| <= 1 inside; EAST's score covers the core shrunk by 0.3 * height
                u = (np.stack([4 * xs - centre[0], 4 * ys - centre[1]], -1) @ rot.T) / half
                inside = (np.abs(u) <= 1).all(-1)
                core = (np.abs(u[..., 0]) < 1 - 0.3 * line_h / half[0]) & (np.abs(u[..., 1]) < 0.4)
                for k in range(4):
                    geo[2 * k][inside] = 4 * xs[inside] - quad[k, 0] + rng.normal(0, noise, inside.sum())
                    geo[2 * k + 1][inside] = 4 * ys[inside] - quad[k, 1] + rng.normal(0, noise, inside.sum())
                score[inside & ~core] = rng.uniform(0.5, 0.85, (inside & ~core).sum())
                score[core] = np.clip(rng.uniform(0.86, 0.99) + rng.normal(0, 0.04, core.sum()), 0, 1)
                x += word_w + rng.uniform(12, 50)
                placed += 1
            y += line_h + rng.uniform(8, 30)
        specks = rng.integers(3, [h4 - 3, w4 - 3], (max(3, n_words // 10), 2))
        score[specks[:, 0], specks[:, 1]] = rng.uniform(0.8, 0.9, len(specks))
        scores.append(score)
        geos.append(geo)
    return np.stack(scores)[:, None].astype(np.float32), np.stack(geos).astype(np.float32)


def load_paddle_east(src: Path, lanms_path: Path | None):
    """PaddleOCR's EASTPostProcess class and the stub ``ppocr.utils.utility`` module whose
    ``use_lanms`` attribute decides whether its ``check_install("lanms", ...)`` succeeds."""
    files = [src / "ppocr" / "postprocess" / f for f in ("locality_aware_nms.py", "east_postprocess.py")]
    for path in files:
        if not path.is_file():
            raise SystemExit(f"{path} not found: --paddleocr-src must be a PaddleOCR source checkout")
    if importlib.util.find_spec("paddle") is None:
        sys.modules["paddle"] = types.ModuleType("paddle")
    sys.modules["paddle"].Tensor = getattr(sys.modules["paddle"], "Tensor", type("Tensor", (), {}))
    for name in ("ppocr", "ppocr.utils", "ppocr.postprocess"):  # packages without their __init__
        package = types.ModuleType(name)
        package.__path__ = []
        sys.modules[name] = package
    utility = types.ModuleType("ppocr.utils.utility")
    utility.use_lanms = False

    def check_install(module_name: str, install_name: str) -> None:
        if not utility.use_lanms:  # as PaddleOCR's own pip install of lanms-nova failing
            raise ImportError(f"{module_name} not installed")
    utility.check_install = check_install
    sys.modules["ppocr.utils.utility"] = utility
    if lanms_path is not None:
        sys.path.insert(0, str(lanms_path))
    for path in files:
        name = f"ppocr.postprocess.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.EASTPostProcess, utility


def check_east(ours: list[dict], theirs: list[dict], label: str, exact: bool) -> tuple[int, int]:
    """(boxes, boxes whose vertices differ at all). ``exact``: points must be equal; otherwise each
    of ours pairs up with one of theirs, every vertex within 1 px. Ours clips quads to the image and
    PaddleOCR's EAST does not, so the maps keep every text quad inside it."""
    n = differ = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        pa = np.asarray(a["points"], np.int64).reshape(-1, 4, 2)
        pb = np.asarray(b["points"], np.int64).reshape(-1, 4, 2)
        if exact:
            if pa.shape != pb.shape or not np.array_equal(pa, pb):
                raise SystemExit(f"MISMATCH {label} image {i}: ours {len(pa)} boxes, PaddleOCR {len(pb)}")
        else:
            dist = np.abs(pa[:, None] - pb[None]).reshape(len(pa), len(pb), 8).max(-1)
            nearest = dist.argmin(1) if len(pb) else np.zeros(0, int)
            if len(pa) != len(pb) or len(set(nearest.tolist())) != len(pa) or (
                    len(pa) and dist[np.arange(len(pa)), nearest].max() > 1):
                raise SystemExit(f"MISMATCH {label} image {i}: ours {len(pa)} boxes, PaddleOCR+lanms {len(pb)}"
                                 " (or a vertex more than 1 px apart)")
            differ += int((dist[np.arange(len(pa)), nearest] > 0).sum())
        n += len(pa)
    return n, differ


def quiet(fn):
    """PaddleOCR's EAST prints a line per image when it falls back from lanms; keep it off stdout."""
    def call(preds, shapes):
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(preds, shapes)
    return call


def time_call(fn, preds: dict, shapes: np.ndarray) -> float:
    """CPU time of this thread (both implementations are single-threaded here), which other
    processes on a shared machine disturb far less than wall time."""
    t0 = time.thread_time()
    fn(preds, shapes)
    return time.thread_time() - t0


def table(title: str, columns: list[str]) -> None:
    print(f"\n{title}\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))


def run_db(args: argparse.Namespace) -> list[float]:
    theirs_cls, stubbed = (None, False)
    if args.paddleocr_src is not None:
        theirs_cls, stubbed = load_paddle_db(args.paddleocr_src)
        print(f"PaddleOCR: {args.paddleocr_src}/ppocr/postprocess/db_postprocess.py"
              + (" (paddle not installed: stub paddle.Tensor)" if stubbed else ""))
    table(f"DB: batch {args.batch}, {COMMON}, median of {args.repeats} interleaved repeats",
          ["map", "variant", "boxes", "ours ms/img"] + (["PaddleOCR ms/img", "speed-up"] if theirs_cls else []))
    speedups = []
    for name, h, w, blobs in SIZES:
        if name not in args.sizes.split(","):
            continue
        preds = {"maps": make_maps(h, w, blobs, args.batch, seed=h + w)}
        shapes = np.array([[h, w, 1.0, 1.0]] * args.batch, dtype=np.float64)
        for label, kw in VARIANTS:
            ours = DBPostProcess(**COMMON, **kw)
            theirs = theirs_cls(**COMMON, **kw) if theirs_cls else None
            out = ours(preds, shapes)
            n_boxes = sum(len(o["points"]) for o in out)
            if theirs is not None:
                n_boxes = check_identical(out, theirs(preds, shapes), f"{name} {label}")
            t_ours, t_theirs = [], []
            for _ in range(args.repeats):
                t_ours.append(time_call(ours, preds, shapes))
                if theirs is not None:
                    t_theirs.append(time_call(theirs, preds, shapes))
            mo = statistics.median(t_ours) * 1000 / args.batch
            row = f"| {name} | {label} | {n_boxes} | {mo:.2f} |"
            if theirs is not None:
                mt = statistics.median(t_theirs) * 1000 / args.batch
                speedups.append(mt / mo)
                row += f" {mt:.2f} | {mt / mo:.2f}x |"
            print(row, flush=True)
    if speedups:
        print(f"\nDB: boxes identical in every row; speed-up min {min(speedups):.2f}x, "
              f"median {statistics.median(speedups):.2f}x")
    return speedups


def run_east(args: argparse.Namespace) -> None:
    peers = []  # (column, callable, exact)
    if args.paddleocr_src is not None:
        theirs_cls, utility = load_paddle_east(args.paddleocr_src, args.lanms_path)
        has_lanms = importlib.util.find_spec("lanms") is not None
        print(f"PaddleOCR: {args.paddleocr_src}/ppocr/postprocess/east_postprocess.py; lanms "
              + (f"from {importlib.util.find_spec('lanms').origin}" if has_lanms else "not importable"))
        theirs = quiet(theirs_cls(**EAST_COMMON))

        def with_lanms(flag: bool):
            def call(preds, shapes):
                utility.use_lanms = flag
                return theirs(preds, shapes)
            return call
        if has_lanms:
            peers.append(("PaddleOCR+lanms", with_lanms(True), False))
        peers.append(("PaddleOCR, shapely fallback", with_lanms(False), True))
    columns = ["map", "geometry", "proposals", "boxes", "ours ms/img"]
    for peer, _, _ in peers:
        columns += [f"{peer} ms/img", "speed-up"]
    table(f"EAST: batch {args.batch}, {EAST_COMMON}, median of {args.repeats} interleaved repeats", columns)
    speedups: dict[str, list[float]] = {peer: [] for peer, _, _ in peers}
    differing = []
    for name, h, w, words in SIZES:
        if name not in args.sizes.split(","):
            continue
        shapes = np.array([[h, w, 1.0, 1.0]] * args.batch, dtype=np.float64)
        for label, noise in EAST_VARIANTS:
            score, geo = make_east_maps(h, w, words, args.batch, seed=h + w, noise=noise)
            preds = {"f_score": score, "f_geo": geo}
            ours = EASTPostProcess(**EAST_COMMON)
            out = ours(preds, shapes)
            n_boxes = sum(len(o["points"]) for o in out)
            for peer, fn, exact in peers:
                n_boxes, n_diff = check_east(out, fn(preds, shapes), f"{name} {label} {peer}", exact)
                if not exact:
                    differing.append(f"{name} {label}: {n_diff}/{n_boxes}")
            times: list[list[float]] = [[] for _ in range(len(peers) + 1)]
            for _ in range(args.repeats):
                for k, fn in enumerate([ours] + [fn for _, fn, _ in peers]):
                    times[k].append(time_call(fn, preds, shapes))
            mo = statistics.median(times[0]) * 1000 / args.batch
            proposals = int((score > EAST_COMMON["score_thresh"]).sum()) // args.batch
            row = f"| {name} | {label} | {proposals} | {n_boxes} | {mo:.2f} |"
            for (peer, _, _), t in zip(peers, times[1:]):
                mt = statistics.median(t) * 1000 / args.batch
                speedups[peer].append(mt / mo)
                row += f" {mt:.2f} | {mt / mo:.2f}x |"
            print(row, flush=True)
    for peer, exact in ((p, e) for p, _, e in peers):
        sp = speedups[peer]
        print(f"\nEAST vs {peer}: " + ("points identical in every row" if exact else
              "every box within 1 px, boxes with any vertex off: " + ", ".join(differing))
              + f"; speed-up min {min(sp):.2f}x, median {statistics.median(sp):.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paddleocr-src", type=Path, default=None, help="PaddleOCR release/2.10 source tree")
    ap.add_argument("--lanms-path", type=Path, default=None,
                    help="directory holding lanms-nova (pip install --target DIR lanms-nova), for the EAST peer")
    ap.add_argument("--which", default="db,east", help="db, east or both (default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(s[0] for s in SIZES), help="subset of " + ",".join(s[0] for s in SIZES))
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)  # dilate may thread; keep both sides single-threaded
    if args.paddleocr_src is None:
        print("No --paddleocr-src: printing OCRFlow's times only (no peer measured).")
    which = set(args.which.split(","))
    if "db" in which:
        run_db(args)
    if "east" in which:
        run_east(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
