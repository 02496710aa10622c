"""Rendering primitives for the synthetic data generator: fonts, text masks, backgrounds,
layers placed by an affine matrix, and the "camera" (perspective, light, blur, noise, JPEG).

All randomness comes from the ``numpy.random.Generator`` passed in; images are float32 BGR
in [0, 255] until the camera turns them into uint8. Quads are float (4, 2) arrays ordered
top-left, top-right, bottom-right, bottom-left in pixel-centre coordinates, and go through the
same matrices as the pixels.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans_bold": "DejaVuSans-Bold.ttf",
    "sans_oblique": "DejaVuSans-Oblique.ttf",
    "sans_bold_oblique": "DejaVuSans-BoldOblique.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif_bold": "DejaVuSerif-Bold.ttf",
    "serif_italic": "DejaVuSerif-Italic.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono_bold": "DejaVuSansMono-Bold.ttf",
}
# (font name, weight) per domain: receipts are mostly monospace, signs mostly bold
RECEIPT_FONTS = (("mono", 5), ("mono_bold", 1), ("sans", 2), ("sans_bold", 1), ("serif", 1))
SIGN_FONTS = (("sans_bold", 4), ("serif_bold", 2), ("sans", 1), ("serif", 1),
              ("sans_bold_oblique", 1), ("mono_bold", 1), ("serif_italic", 1))

Quad = np.ndarray


def font_dir() -> str:
    """matplotlib's bundled TrueType folder (DejaVu fonts); nothing is downloaded."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@lru_cache(maxsize=512)
def get_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached PIL font from :data:`FONT_FILES` at ``size`` pixels."""
    return ImageFont.truetype(os.path.join(font_dir(), FONT_FILES[name]), max(4, int(size)))


def pick_font(rng: np.random.Generator, table: tuple[tuple[str, int], ...]) -> str:
    weights = np.array([w for _, w in table], dtype=np.float64)
    return table[int(rng.choice(len(table), p=weights / weights.sum()))][0]


def text_mask(text: str, font: ImageFont.FreeTypeFont, stroke: int = 0) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Render ``text`` as float masks in a frame whose top is the font's ascender line.

    Returns (fill mask, fill+stroke mask, ink box (x0, y0, x1, y1) exclusive) so texts in the same
    font share a baseline and the box is tight around the visible pixels.
    """
    left, _, right, _ = font.getbbox(text, stroke_width=stroke)
    ascent, descent = font.getmetrics()
    pad = 2 + stroke
    size = (int(right - left) + 2 * pad, ascent + descent + 2 * pad)  # getbbox gives ints for int strokes
    origin = (pad - left, pad)
    fill = Image.new("L", size, 0)
    ImageDraw.Draw(fill).text(origin, text, font=font, fill=255)
    outer = fill
    if stroke:
        outer = Image.new("L", size, 0)
        ImageDraw.Draw(outer).text(origin, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    a_fill = np.asarray(fill, dtype=np.float32) / 255.0
    a_out = np.asarray(outer, dtype=np.float32) / 255.0
    rows, cols = np.flatnonzero(a_out.max(1) > 0.1), np.flatnonzero(a_out.max(0) > 0.1)
    if rows.size == 0:
        return a_fill, a_out, (0, 0, 1, 1)
    return a_fill, a_out, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def box_quad(x0: float, y0: float, x1: float, y1: float) -> Quad:
    """Corners of pixel columns x0..x1-1 / rows y0..y1-1 (pixel-centre coordinates)."""
    return np.array([[x0 - 0.5, y0 - 0.5], [x1 - 0.5, y0 - 0.5], [x1 - 0.5, y1 - 0.5], [x0 - 0.5, y1 - 0.5]])


# ---------------------------------------------------------------- colours and backgrounds
def hsv(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return np.array([b, g, r], dtype=np.float32) * 255.0


def luminance(bgr) -> float:
    b, g, r = np.asarray(bgr, dtype=np.float64).reshape(-1, 3).mean(0)
    return 0.114 * b + 0.587 * g + 0.299 * r


def contrast_color(rng: np.random.Generator, bg, min_diff: float = 110.0) -> np.ndarray:
    """A text colour whose luminance differs from ``bg`` by at least ``min_diff`` (legibility)."""
    lum_bg = luminance(bg)
    for _ in range(8):
        u = rng.random()
        if u < 0.35:
            c = np.full(3, rng.uniform(225, 255), np.float32)
        elif u < 0.65:
            c = np.full(3, rng.uniform(0, 45), np.float32)
        elif u < 0.8:
            c = hsv(rng.uniform(0.11, 0.17), rng.uniform(0.7, 1), rng.uniform(0.85, 1))  # yellow
        else:
            c = hsv(rng.random(), rng.uniform(0.5, 1), rng.uniform(0.1, 1))
        if abs(luminance(c) - lum_bg) >= min_diff:
            return c
    return np.full(3, 255.0 if lum_bg < 128 else 0.0, np.float32)


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a coarse Gaussian grid upsampled with bicubic."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def background(rng: np.random.Generator, h: int, w: int, color, kind: str) -> np.ndarray:
    """A (h, w, 3) float32 background of ``kind`` around ``color`` (BGR)."""
    color = np.asarray(color, np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = color
    if kind == "gradient":
        other = np.clip(color + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xs * np.cos(ang) / max(w, 1) + ys * np.sin(ang) / max(h, 1)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img += t[..., None] * (other - color)
    elif kind == "noise":
        n = value_noise(rng, h, w, rng.uniform(8, 60)) + 0.5 * value_noise(rng, h, w, rng.uniform(2, 8))
        img += n[..., None] * rng.uniform(8, 22) * rng.uniform(0.6, 1.0, 3).astype(np.float32)
    elif kind == "brick":
        bh = int(rng.uniform(12, 40))
        bw = int(bh * rng.uniform(2, 3.5))
        mortar = np.clip(color + rng.uniform(35, 70) * (1 if luminance(color) < 140 else -1), 0, 255)
        img += value_noise(rng, h, w, bh)[..., None] * 10
        for r, y in enumerate(range(0, h, bh)):
            img[y:y + 2] = mortar
            off = (bw // 2) * (r % 2)
            for x in range(-off, w, bw):
                if x >= 0:
                    img[y:y + bh, x:x + 2] = mortar
    elif kind == "stripes":
        period = rng.uniform(10, 60)
        ang = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        s = np.sin((xs * np.cos(ang) + ys * np.sin(ang)) * 2 * np.pi / period)
        img += (s[..., None] * rng.uniform(8, 20))
    elif kind == "wood":
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        warp = value_noise(rng, h, w, 80) * 12
        s = np.sin((ys + warp) * 2 * np.pi / rng.uniform(6, 18))
        img += s[..., None] * rng.uniform(8, 18) + value_noise(rng, h, w, 30)[..., None] * 10
    if kind != "solid":
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(0.5, 3)
    return np.clip(img, 0, 255, out=img)


# ---------------------------------------------------------------- layers
@dataclass
class Layer:
    """Draw operations in a local frame: (alpha mask, colour (3,) or image (h, w, 3)), in order."""

    w: int
    h: int
    ops: list = field(default_factory=list)
    quads: list = field(default_factory=list)  # (quad (4,2), text, dont_care) in local coordinates

    def footprint(self) -> Quad:
        return box_quad(0, 0, self.w, self.h)


def blend(dst: np.ndarray, alpha: np.ndarray, src, x: int, y: int) -> None:
    """Alpha-blend ``src`` (colour or image) with mask ``alpha`` into ``dst`` at (x, y), clipped."""
    h, w = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, dst.shape[1]), min(y + h, dst.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    s = src if np.ndim(src) == 1 else src[y0 - y:y1 - y, x0 - x:x1 - x]
    region = dst[y0:y1, x0:x1]
    region += (s - region) * a


def place(canvas: np.ndarray, layer: Layer, M: np.ndarray) -> list:
    """Warp ``layer`` onto ``canvas`` with affine ``M`` (2x3); returns its transformed quads."""
    corners = cv2.transform(layer.footprint()[None], M)[0]
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, canvas.shape[1]), min(y1, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        m2 = M.copy()
        m2[:, 2] -= (x0, y0)
        dsize = (int(x1 - x0), int(y1 - y0))
        for alpha, src in layer.ops:
            a = cv2.warpAffine(alpha, m2, dsize, flags=cv2.INTER_LINEAR, borderValue=0)
            if np.ndim(src) != 1:
                src = cv2.warpAffine(src, m2, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            blend(canvas, a, src, int(x0), int(y0))
    return [(cv2.transform(q[None], M)[0], t, dc) for q, t, dc in layer.quads]


def affine(angle_deg: float, shear: float, center: tuple[float, float], to: tuple[float, float]) -> np.ndarray:
    """Rotate/shear around ``center`` (local) and move it to ``to`` (canvas)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ np.array([[1, shear], [0, 1]])
    t = np.asarray(to) - rot @ np.asarray(center)
    return np.hstack([rot, t[:, None]]).astype(np.float64)


# ---------------------------------------------------------------- camera
def camera(rng: np.random.Generator, img: np.ndarray, quads: list, persp: float,
           blur: float = 1.0) -> tuple[np.ndarray, list]:
    """Photograph ``img``: outward perspective (no empty borders), light, blur, noise, JPEG."""
    h, w = img.shape[:2]
    if persp > 0 and rng.random() < 0.85:
        src = box_quad(0, 0, w, h).astype(np.float32)
        sign = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
        dst = src + sign * rng.random((4, 2)).astype(np.float32) * persp * np.array([w, h], np.float32)
        H = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        quads = [(cv2.perspectiveTransform(q[None].astype(np.float64), H)[0], t, dc) for q, t, dc in quads]
    # light: a linear gradient, sometimes a soft cast shadow; computed small and upsampled
    sh, sw = max(2, h // 8), max(2, w // 8)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    t = (xs / sw - 0.5) * np.cos(ang) + (ys / sh - 0.5) * np.sin(ang)
    light = 1.0 + rng.uniform(0, 0.35) * t
    if rng.random() < 0.2:
        ang2 = rng.uniform(0, 2 * np.pi)
        d = (xs / sw - 0.5) * np.cos(ang2) + (ys / sh - 0.5) * np.sin(ang2) - rng.uniform(-0.3, 0.3)
        light *= 1.0 - rng.uniform(0.15, 0.35) * (1 / (1 + np.exp(-d * 30)))
    light = cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)
    img = img * light[..., None]
    if rng.random() < 0.6 * blur:
        sigma = rng.uniform(0.3, 1.1) * blur
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    elif rng.random() < 0.1 * blur:
        k = int(rng.integers(3, 6))
        line = np.zeros((k, k), np.float32)
        line[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kern = cv2.warpAffine(line, rot, (k, k))
        img = cv2.filter2D(img, -1, np.divide(kern, max(float(kern.sum()), 1e-6), dtype=np.float32))
    sigma_n = rng.uniform(0, 7)
    if sigma_n > 0.5:
        img = img + rng.standard_normal((h, w, 1), dtype=np.float32) * sigma_n
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        quality = int(rng.integers(30, 86))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out, quads


def finalize_quads(quads: list, w: int, h: int, min_side: float = 6.0) -> list:
    """Round and clip quads; cut-off or tiny text becomes don't-care; invisible text is dropped."""
    out = []
    frame = box_quad(0, 0, w, h).astype(np.float32)
    for q, text, dc in quads:
        q = np.asarray(q, np.float32)
        area = abs(cv2.contourArea(q))
        if area < 1:
            continue
        inter, _ = cv2.intersectConvexConvex(q, frame)
        if inter < 4 or inter < 0.05 * area:
            continue
        if inter < 0.98 * area:
            dc = True
        sides = np.linalg.norm(q - np.roll(q, -1, 0), axis=1)
        if min(sides) < min_side:
            dc = True
        qi = np.rint(q).astype(np.int32)
        qi[:, 0] = np.clip(qi[:, 0], 0, w - 1)
        qi[:, 1] = np.clip(qi[:, 1], 0, h - 1)
        out.append((qi, text, bool(dc)))
    return out


def dot_matrix(fill: np.ndarray, pitch: int, strength: np.ndarray | None = None) -> np.ndarray:
    """Re-draw a text mask as a dot-matrix (impact printer) print.

    The mask is sampled on a grid of ``pitch`` x ``pitch`` pixel cells; every cell at least a third
    covered becomes one round dot (diameter ~0.8 ``pitch``). ``strength`` (the grid's shape, values in
    [0, 1]) gives each dot its own ink density, as a worn ribbon does. Same shape as ``fill``.
    """
    h, w = fill.shape
    p = max(2, int(pitch))
    gh, gw = -(-h // p), -(-w // p)
    padded = np.zeros((gh * p, gw * p), np.float32)
    padded[:h, :w] = fill
    cells = padded.reshape(gh, p, gw, p).mean(axis=(1, 3)) > 0.33
    on = cells.astype(np.float32) if strength is None else cells * strength.astype(np.float32)
    c = (p - 1) / 2
    yy, xx = np.mgrid[0:p, 0:p].astype(np.float32)
    disc = np.clip(0.4 * p + 0.5 - np.hypot(yy - c, xx - c), 0, 1).astype(np.float32)
    return np.kron(on, disc)[:h, :w]
