"""Word crops from ICDAR detection ground truth, and a deterministic train/test split of an ICDAR set.

``crop_words`` turns ``gt_<image>.txt`` files + images into ``word_<n>.png`` crops and one ICDAR
rec ``gt.txt``; ``split_icdar`` writes the raw layout the pipeline ingests (``det/<split>/images``,
``det/<split>/gt``, ``rec/<split>``; see ``components.steps.data.ingest``) plus ``split.json``.

Crop convention (PaddleOCR's ``get_rotate_crop_image``): the quad is re-ordered clockwise starting
at the corner whose outgoing edge points most nearly to +x (so any gt point order gives the same
crop); width = max(top, bottom edge), height = max(left, right edge); the quad is warped onto
``(0,0) (w,0) (w,h) (0,h)`` (cubic, replicated border); a crop with ``h / w >= 1.5`` is rotated 90°
counter-clockwise (vertical words). ``keep_gt_start=True`` trusts the gt's first point as the
top-left instead (only the winding is fixed), which keeps the reading direction of steep words.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ocr_core.data.icdar import (
    IMAGE_EXTS,
    _natural_key,
    find_image_name,
    format_icdar_rec_line,
    gt_name_to_image_stem,
    parse_icdar_det_line,
)
from ocr_core.data.label_io import read_label_lines
from ocr_core.errors import DataError
from ocr_core.progress import progress as progress_bar

DONT_CARE = "###"
CROP_EXTS = ("png", "jpg")
SKIP_REASONS = ("dont_care", "empty_text", "degenerate", "too_small", "outside", "missing_image")
MIN_INSIDE = 0.5  # a quad with less than half its area inside the image is "outside"


@dataclass
class CropStats:
    """What :func:`crop_words` wrote and skipped; every skip reason counts words."""

    images: int = 0  # gt files read
    words: int = 0  # crops written
    dont_care: int = 0  # transcription ``###``
    empty_text: int = 0  # blank transcription
    degenerate: int = 0  # area < 1 px² or self-intersecting in the gt's point order
    too_small: int = 0  # crop side < min_size
    outside: int = 0  # less than half the quad inside the image
    missing_image: int = 0  # words of gt files without an image
    missing_images: list[str] = field(default_factory=list)

    def skipped(self) -> dict[str, int]:
        """``reason -> words`` for the reasons that skipped anything."""
        return {r: getattr(self, r) for r in SKIP_REASONS if getattr(self, r)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ geometry
def _area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def is_degenerate(quad: Any) -> bool:
    """True for a quad (in the gt's point order) with area < 1 px² or crossing edges."""
    p = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    return _area(p) < 1.0 or _segments_cross(p[0], p[1], p[2], p[3]) or _segments_cross(p[1], p[2], p[3], p[0])


def order_quad(quad: Any, keep_gt_start: bool = False) -> np.ndarray:
    """The 4 points clockwise (on screen, y down) from the corner whose next edge points most to +x.

    The result depends only on the point set, not on the order the gt lists it in. With
    ``keep_gt_start`` a clockwise gt order is kept as it is and a counter-clockwise one is reversed
    around its first point (the gt's start corner often encodes the reading direction of steep text).
    """
    pts = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    if keep_gt_start:
        x, y = pts[:, 0], pts[:, 1]
        clockwise = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) >= 0  # y points down
        return pts if clockwise else pts[[0, 3, 2, 1]]
    c = pts.mean(axis=0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]), kind="stable")]
    edges = np.roll(pts, -1, axis=0) - pts
    cos = edges[:, 0] / np.maximum(np.hypot(edges[:, 0], edges[:, 1]), 1e-12)
    return np.roll(pts, -int(np.argmax(cos)), axis=0)


def _crop_size(pts: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an ordered quad, rounded half up."""
    width = max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))
    height = max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))
    return int(np.floor(width + 0.5)), int(np.floor(height + 0.5))


def crop_quad(image: np.ndarray, quad: Any, keep_gt_start: bool = False) -> np.ndarray:
    """Perspective-rectified crop of a 4-point quad (PaddleOCR's ``get_rotate_crop_image``).

    Args:
        image: HxW or HxWxC image.
        quad: 4 points ``[[x, y], ...]`` in any order.
        keep_gt_start: Start at the quad's first point instead (see :func:`order_quad`).

    Returns:
        The crop, ``max(top, bottom)`` wide and ``max(left, right)`` high (each >= 1), rotated 90°
        counter-clockwise when height / width >= 1.5.
    """
    import cv2

    pts = order_quad(quad, keep_gt_start)
    w, h = (max(1, s) for s in _crop_size(pts))
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(pts.astype(np.float32), dst)
    crop = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if h / w >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def inside_fraction(quad: Any, width: int, height: int) -> float:
    """Share of the (ordered) quad's area inside ``[0, width] x [0, height]`` (Sutherland-Hodgman)."""
    poly = [tuple(p) for p in order_quad(quad)]
    total = _area(np.asarray(poly))
    if total <= 0:
        return 0.0
    # each clip edge: (axis, bound, keep points with coord >= bound when sign is +1, <= when -1)
    for axis, bound, sign in ((0, 0.0, 1), (0, float(width), -1), (1, 0.0, 1), (1, float(height), -1)):
        out: list[tuple[float, float]] = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            cur_in, prev_in = sign * (cur[axis] - bound) >= 0, sign * (prev[axis] - bound) >= 0
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                out.append(cur)
        poly = out
        if len(poly) < 3:
            return 0.0
    return _area(np.asarray(poly)) / total


# ------------------------------------------------------------------------------------ crop_words
def _read_image(path: str) -> np.ndarray:
    import cv2

    from ocr_core.data import image_io

    try:
        img = image_io.read(path, cv2.IMREAD_COLOR)
    except image_io.ImageTooLarge as exc:
        raise DataError(str(exc)) from exc
    if img is None:
        raise DataError(f"{path}: cannot decode image")
    return img


def _write_image(path: Path, img: np.ndarray, ext: str, jpeg_quality: int = 95) -> None:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in ("jpg", "jpeg") else []
    ok, buf = cv2.imencode(f".{ext}", img, params)
    if not ok:
        raise DataError(f"{path}: cannot encode image")
    path.write_bytes(buf.tobytes())


def _same_or_inside(inner: str, outer: str) -> bool:
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _check_out_dir(out_dir: str, inputs: tuple[str, ...], overwrite: bool) -> None:
    for src in inputs:
        if _same_or_inside(src, out_dir):
            raise DataError(f"{out_dir}: output directory is or contains the input {src}; choose another --out")
    if os.path.isdir(out_dir) and any(os.scandir(out_dir)) and not overwrite:
        raise DataError(f"{out_dir}: output directory is not empty (use --overwrite)")


def crop_words(gt_dir: str, image_dir: str, out_dir: str, *, min_size: int = 4, ext: str = "png",
               progress: bool = True, overwrite: bool = False, keep_gt_start: bool = False) -> CropStats:
    """Crop every care word of an ICDAR det set into ``word_<n>.<ext>`` + an ICDAR rec ``gt.txt``.

    Args:
        gt_dir: Directory of ``gt_<image>.txt`` files (read in natural order).
        image_dir: Directory holding ``<image>.<ext>`` for each gt file.
        out_dir: Where the crops and ``gt.txt`` go (created; must be empty unless ``overwrite``).
        min_size: Skip words whose crop width or height is below this.
        ext: ``png`` or ``jpg``.
        progress: Report progress per gt file.
        overwrite: Write into a non-empty ``out_dir`` (existing files are overwritten, never removed).
        keep_gt_start: Trust each quad's first gt point as its top-left (see :func:`order_quad`).

    Raises:
        DataError: a missing gt dir or image dir, a malformed gt line (``file:line``), an undecodable image, an
            output dir that is or contains an input dir.
    """
    if ext not in CROP_EXTS:
        raise DataError(f"crop extension must be one of {', '.join(CROP_EXTS)}, got {ext!r}")
    if not os.path.isdir(gt_dir):
        raise DataError(f"{gt_dir}: gt directory does not exist")
    if not os.path.isdir(image_dir):
        why = "is not a directory" if os.path.exists(image_dir) else "does not exist"
        raise DataError(f"{image_dir}: image directory {why}")
    _check_out_dir(out_dir, (gt_dir, image_dir), overwrite)
    names = sorted((n for n in os.listdir(gt_dir) if n.lower().endswith(".txt")), key=_natural_key)
    if not names:
        raise DataError(f"{gt_dir}: no .txt ground-truth files")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats, lines = CropStats(), []
    for name in progress_bar(names, desc="crop words", unit="file", disable=not progress):
        gt_path = os.path.join(gt_dir, name)
        boxes = []
        for line_no, text in read_label_lines(gt_path):
            if text is None:
                raise DataError(f"{gt_path}:{line_no}: line is not valid UTF-8")
            box = parse_icdar_det_line(text, gt_path, line_no)
            if box.transcription == DONT_CARE:
                stats.dont_care += 1
            elif not box.transcription.strip():
                stats.empty_text += 1
            elif "\t" in box.transcription:
                raise DataError(f"{gt_path}:{line_no}: transcription contains a tab, which rec labels cannot hold")
            else:
                boxes.append(box)
        stats.images += 1
        img_name, found = find_image_name(gt_name_to_image_stem(name), image_dir)
        if not found:
            stats.missing_image += len(boxes)
            stats.missing_images.append(img_name)
            continue
        if not boxes:
            continue
        img = _read_image(os.path.join(image_dir, img_name))
        for box in boxes:
            if is_degenerate(box.points):
                stats.degenerate += 1
            elif min(_crop_size(order_quad(box.points, keep_gt_start))) < min_size:
                stats.too_small += 1
            elif inside_fraction(box.points, img.shape[1], img.shape[0]) < MIN_INSIDE:
                stats.outside += 1
            else:
                stats.words += 1
                word = f"word_{stats.words}.{ext}"
                _write_image(out / word, crop_quad(img, box.points, keep_gt_start), ext)
                lines.append(format_icdar_rec_line(word, box.transcription))
    tmp = out / f"gt.txt.tmp-{os.getpid()}"
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, out / "gt.txt")
    return stats


# ------------------------------------------------------------------------------------ split_icdar
def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def split_names(names: list[str], test_count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train, test)``: test = ``names[perm[:test_count]]`` with ``perm = default_rng(seed).permutation``.

    ``names`` must already be in plain lexicographic order (``sorted``); both lists come back sorted.
    """
    if not 0 < test_count < len(names):
        raise DataError(f"test count must be between 1 and {len(names) - 1} (there are {len(names)} "
                        f"images), got {test_count}")
    perm = np.random.default_rng(seed).permutation(len(names))
    test = {names[i] for i in perm[:test_count]}
    return sorted(n for n in names if n not in test), sorted(test)


def _place(src: Path, dst: Path, link: bool, jpeg_quality: Optional[int]) -> None:
    if jpeg_quality is not None:
        _write_image(dst, _read_image(str(src)), "jpg", jpeg_quality)
    elif link:
        try:
            os.link(src, dst)
        except OSError as exc:
            raise DataError(f"{src}: cannot hardlink into {dst.parent} ({exc.strerror or exc}); drop --link") from exc
    else:
        shutil.copyfile(src, dst)


def split_icdar(images_dir: str, gt_dir: str, out_dir: str, *, test_count: int = 200, seed: int = 0,
                crop: bool = True, jpeg_quality: Optional[int] = None, link: bool = False,
                overwrite: bool = False, min_size: int = 4, keep_gt_start: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Split an ICDAR det set into the pipeline's raw layout (``det/``, ``rec/``, ``split.json``).

    The split rule (reproducible anywhere): ``names = sorted(image file names)``,
    ``perm = numpy.random.default_rng(seed).permutation(len(names))``, test = ``names[perm[:test_count]]``.

    Args:
        images_dir: Directory of images (files with an image suffix; anything else is ignored).
        gt_dir: Directory with ``gt_<image stem>.txt`` for every image.
        out_dir: Output root; must be empty unless ``overwrite`` (then its ``det/``, ``rec/`` and
            ``split.json`` are replaced; the inputs are never touched).
        test_count: Images in the test split, ``0 < test_count < number of images``.
        seed: Seed of the permutation.
        crop: Also crop the care words of each split into ``rec/<split>/`` (from the original images).
        jpeg_quality: Re-encode images as ``<stem>.jpg`` at this quality instead of copying the bytes.
        link: Hardlink the images instead of copying them.
        overwrite: Write into a non-empty ``out_dir``.
        min_size: Passed to :func:`crop_words`.
        keep_gt_start: Passed to :func:`crop_words`.
        progress: Report progress.

    Returns:
        The content of ``split.json``.

    Raises:
        DataError: bad ``test_count``/``jpeg_quality``, images without gt, ``out_dir`` that is or
            contains an input, a non-empty ``out_dir``, a malformed gt line.
    """
    for d, what in ((images_dir, "images"), (gt_dir, "gt")):
        if not os.path.isdir(d):
            raise DataError(f"{d}: {what} directory does not exist")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise DataError(f"JPEG quality must be 1..100, got {jpeg_quality}")
    if jpeg_quality is not None and link:
        raise DataError("--link and --jpeg-quality exclude each other (a re-encoded image is a new file)")
    names = sorted(p.name for p in Path(images_dir).iterdir() if p.is_file() and _is_image(p.name))
    if not names:
        raise DataError(f"{images_dir}: no images ({', '.join(IMAGE_EXTS)})")
    gt_of = {n: f"gt_{os.path.splitext(n)[0]}.txt" for n in names}
    missing = [n for n in names if not os.path.isfile(os.path.join(gt_dir, gt_of[n]))]
    if missing:
        raise DataError(f"{gt_dir}: {len(missing)} image(s) have no gt file, e.g. "
                        + ", ".join(f"{n} (needs {gt_of[n]})" for n in missing[:5]))
    out_of = {n: (os.path.splitext(n)[0] + ".jpg" if jpeg_quality is not None else n) for n in names}
    if len(set(out_of.values())) < len(names) or len({gt_of[n] for n in names}) < len(names):
        raise DataError(f"{images_dir}: two images share a file stem; gt_<stem>.txt cannot tell them apart")
    train, test = split_names(names, test_count, seed)
    _check_out_dir(out_dir, (images_dir, gt_dir), overwrite)
    out = Path(out_dir)
    for stale in ("det", "rec"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "split.json").unlink(missing_ok=True)
    counts: dict[str, int] = {"images": len(names), "train_images": len(train), "test_images": len(test)}
    crops: dict[str, Any] = {}
    for split, members in (("train", train), ("test", test)):
        img_out, gt_out = out / "det" / split / "images", out / "det" / split / "gt"
        img_out.mkdir(parents=True)
        gt_out.mkdir(parents=True)
        for n in progress_bar(members, desc=f"write det/{split}", unit="image", disable=not progress):
            _place(Path(images_dir) / n, img_out / out_of[n], link, jpeg_quality)
            shutil.copyfile(Path(gt_dir) / gt_of[n], gt_out / gt_of[n])
        if crop:
            st = crop_words(str(gt_out), images_dir, str(out / "rec" / split), min_size=min_size,
                            progress=progress, keep_gt_start=keep_gt_start)
            crops[split] = st.to_dict()
            counts[f"{split}_words"] = st.words
    info = {
        "rule": "names = sorted(image file names); perm = numpy.random.default_rng(seed)"
                ".permutation(len(names)); test = names[perm[:test_count]]",
        "seed": seed, "test_count": test_count,
        # base names only: the same data split from another path gives a byte-identical split.json
        "images_dir": os.path.basename(os.path.normpath(images_dir)),
        "gt_dir": os.path.basename(os.path.normpath(gt_dir)),
        "jpeg_quality": jpeg_quality, "link": link, "min_size": min_size, "keep_gt_start": keep_gt_start,
        "counts": counts, "crop": crops or None,
        "train": sorted(out_of[n] for n in train), "test": sorted(out_of[n] for n in test),
    }
    tmp = out / f"split.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "split.json")
    return info


__all__ = ["SKIP_REASONS", "CropStats", "crop_quad", "crop_words", "inside_fraction", "is_degenerate",
           "order_quad", "split_icdar", "split_names"]
