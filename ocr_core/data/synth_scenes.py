"""The synthetic domains: a photographed ``receipt`` and street ``sign`` scenes, and word crops.

``dotmatrix`` is a receipt printed by an impact printer: every glyph is a grid of round dots of
uneven ink.

``render_det_sample`` and ``render_word`` are pure functions of the generator they are given.
"""

from __future__ import annotations

import numpy as np

from ocr_core.data import synth_text as st
from ocr_core.data.synth_render import (
    RECEIPT_FONTS,
    SIGN_FONTS,
    Layer,
    affine,
    background,
    blend,
    box_quad,
    camera,
    contrast_color,
    dot_matrix,
    finalize_quads,
    get_font,
    hsv,
    luminance,
    pick_font,
    place,
    text_mask,
)

DOMAINS = ("receipt", "sign", "mixed", "dotmatrix")


def resolve_domain(rng: np.random.Generator, domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    if domain == "mixed":
        return "receipt" if rng.random() < 0.5 else "sign"
    return domain


# ---------------------------------------------------------------- receipt
def _paper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(212, 250)
    tint = rng.uniform(-5, 5, 3) + np.array([0, 0, rng.uniform(0, 6)])  # a touch of warm paper
    paper = background(rng, h, w, np.clip(base + tint, 0, 255), "noise")
    for _ in range(int(rng.integers(0, 3))):  # creases: a faint darker band across the paper
        y = int(rng.integers(0, h))
        paper[y:y + int(rng.integers(1, 4))] *= rng.uniform(0.88, 0.96)
    return paper


def _receipt_program(rng: np.random.Generator) -> list[tuple]:
    """The lines of one receipt, top to bottom: (kind, left, right, size factor, bold)."""
    lines: list[tuple] = [("center", st.store_name(rng), None, rng.uniform(1.2, 1.6), True)]
    if rng.random() < 0.8:
        lines.append(("center", st.address(rng), None, 1.0, False))
    if rng.random() < 0.5:
        lines.append(("center", st.phone(rng), None, 1.0, False))
    lines += [("lr", st.date(rng), st.clock(rng), 1.0, False), ("sep",)]
    cents = 0
    for _ in range(int(rng.integers(3, 13))):
        c = int(rng.integers(40, 2500))
        cents += c
        lines.append(("lr", st.item_name(rng), f"{c // 100}.{c % 100:02d}", 1.0, False))
        if rng.random() < 0.15:
            q = int(rng.integers(2, 6))
            lines.append(("indent", f"{q} x {c // q // 100}.{c // q % 100:02d}", None, 0.9, False))
    tax = cents * 8 // 100
    total = cents + tax
    paid = ((total // 500) + 1) * 500
    lines += [("sep",), ("lr", "SUBTOTAL", f"{cents // 100}.{cents % 100:02d}", 1.0, False),
              ("lr", st._pick(rng, ("TAX 8%", "Tax", "VAT 8%")), f"{tax // 100}.{tax % 100:02d}", 1.0, False),
              ("lr", st._pick(rng, ("TOTAL", "Total:", "AMOUNT DUE")), f"{total // 100}.{total % 100:02d}",
               rng.uniform(1.0, 1.3), True)]
    if rng.random() < 0.6:
        lines.append(("lr", "CASH", f"{paid // 100}.00", 1.0, False))
        lines.append(("lr", "CHANGE", f"{(paid - total) // 100}.{(paid - total) % 100:02d}", 1.0, False))
    else:
        lines.append(("lr", f"VISA ****{int(rng.integers(0, 10000)):04d}", None, 1.0, False))
    lines += [("sep",), ("center", st._pick(rng, st.SLOGANS), None, 1.0, False),
              ("tiny", "Keep this receipt for returns within 30 days, thank you", None, 0.45, False)]
    if rng.random() < 0.6:
        lines.append(("barcode",))
    return lines


def _receipt_layer(rng: np.random.Generator, pw: int, ph: int, scale: float, dots: bool = False) -> Layer:
    paper = _paper(rng, ph, pw)
    font_name = pick_font(rng, RECEIPT_FONTS)
    size = max(9, int(rng.uniform(13, 21) * scale))
    ink = np.full(3, rng.uniform(10, 80), np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    fade = rng.uniform(0.75, 1.0)
    mx = int(pw * rng.uniform(0.04, 0.09))
    y = int(ph * rng.uniform(0.02, 0.06))
    pitch = rng.uniform(1.35, 1.8)
    quads = []

    def draw(text: str, s: int, bold: bool, x: float, align: str, dc: bool = False) -> int:
        name = font_name.split("_")[0] + "_bold" if bold and not font_name.startswith("serif") else font_name
        fill, _, (bx0, by0, bx1, by1) = text_mask(text, get_font(name, s))
        if dots:  # impact printer: the glyphs as a grid of dots (no extra random draws)
            fill = dot_matrix(fill, max(2, int(round(s / 9))))
        ox = {"left": x - bx0, "right": x - bx1, "center": x - (bx0 + bx1) / 2}[align]
        ox = int(round(ox))
        if ox + bx0 < 1 or ox + bx1 > pw - 1:
            return -1
        blend(paper, fill * fade, ink, ox, y)
        quads.append((box_quad(ox + bx0, y + by0, ox + bx1, y + by1), text, dc))
        return ox + bx1

    for line in _receipt_program(rng):
        kind = line[0]
        if kind == "sep":
            step = int(rng.integers(4, 9))
            t = max(1, size // 10)
            yy = y + size // 2
            if yy + t >= ph:
                break
            for x in range(mx, pw - mx, step):
                paper[yy:yy + t, x:x + max(1, step // 2)] = paper[yy:yy + t, x:x + max(1, step // 2)] * 0.3 + ink * 0.7
            y += int(size * 0.9)
            continue
        if kind == "barcode":
            bh = int(size * 2.5)
            if y + bh >= ph:
                break
            x = int(pw * 0.25)
            while x < pw * 0.75:
                bw = int(rng.integers(1, 4))
                if rng.random() < 0.55:
                    paper[y:y + bh, x:x + bw] = ink
                x += bw
            y += bh + size
            continue
        _, left, right, factor, bold = line
        s = max(5, int(size * factor))
        if y + s * 1.3 >= ph:
            break
        if kind == "center":
            draw(left, s, bold, pw / 2, "center")
        elif kind == "tiny":
            draw(left[: int(rng.integers(20, len(left) + 1))].strip(), s, False, pw / 2, "center", dc=True)
        else:
            end = draw(left, s, bold, mx + (2 * s if kind == "indent" else 0), "left")
            if right is not None and end > 0:
                n = len(quads)
                start = draw(right, s, bold, pw - mx, "right")
                if start > 0 and quads[n][0][0, 0] < end + s:  # too close to the item name: drop price
                    quads.pop()
        y += int(s * pitch)
    return Layer(pw, ph, [(np.ones((ph, pw), np.float32), paper)], quads)


def _receipt_scene(rng: np.random.Generator, w: int, h: int, dots: bool = False) -> tuple[np.ndarray, list]:
    scale = min(w / 640, h / 480)
    table_kind = st._pick(rng, ("wood", "noise", "solid", "stripes", "gradient"))
    if table_kind == "wood":
        table_col = hsv(rng.uniform(0.05, 0.1), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.7))
    else:
        table_col = hsv(rng.random(), rng.uniform(0, 0.25), rng.uniform(0.1, 0.6))
    canvas = background(rng, h, w, table_col, table_kind)
    pw = int(w * rng.uniform(0.55, 0.95))
    ph = int(h * rng.uniform(0.8, 1.5))
    layer = _receipt_layer(rng, pw, ph, scale, dots)
    top = rng.uniform(-0.25 * ph, 0.1 * h) if ph > h else rng.uniform(0, h - ph)
    to = (w / 2 + rng.uniform(-0.5, 0.5) * (w - pw), top + ph / 2)
    M = affine(rng.uniform(-4, 4), rng.uniform(-0.03, 0.03), (pw / 2, ph / 2), to)
    quads = place(canvas, layer, M)
    return canvas, quads


# ---------------------------------------------------------------- signs
def _wall(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    col = hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
    canvas = background(rng, h, w, col, st._pick(rng, ("solid", "gradient", "noise", "brick", "stripes")))
    for _ in range(int(rng.integers(0, 5))):  # non-text clutter: windows, poles, discs, bars
        c = hsv(rng.random(), rng.uniform(0, 1), rng.uniform(0.1, 1))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        a = np.zeros((h, w), np.float32)
        u = rng.random()
        if u < 0.4:
            a[y:y + int(rng.integers(20, h // 2)), x:x + int(rng.integers(20, w // 3))] = 1
        elif u < 0.7:
            r = int(rng.integers(8, 60))
            yy, xx = np.ogrid[0:h, 0:w]
            a[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 1
        else:
            a[:, x:x + int(rng.integers(3, 15))] = 1
        blend(canvas, a * rng.uniform(0.5, 1), c, 0, 0)
    return canvas


def _sign_layer(rng: np.random.Generator, scale: float, max_w: float, tiny: bool, wall_col) -> Layer:
    font_name = pick_font(rng, SIGN_FONTS)
    if tiny:
        texts, s0 = [st.sign_text(rng).lower()], int(rng.integers(6, 10))
    else:
        texts = [st.sign_text(rng)] + ([st.sign_text(rng)] if rng.random() < 0.3 else [])
        s0 = int(rng.uniform(22, 72) * scale)
    panel = (not tiny) and rng.random() < 0.75
    stroke = 0 if panel or tiny or rng.random() < 0.6 else max(1, s0 // 16)
    sizes = [s0] + [max(8, int(s0 * rng.uniform(0.45, 0.8)))] * (len(texts) - 1)
    masks = [text_mask(t, get_font(font_name, s), stroke) for t, s in zip(texts, sizes)]
    widest = max(m[2][2] - m[2][0] for m in masks)
    if widest > max_w:  # too wide for the image: scale the fonts down once
        f = max_w / widest
        sizes = [max(6, int(s * f)) for s in sizes]
        masks = [text_mask(t, get_font(font_name, s), stroke) for t, s in zip(texts, sizes)]
    pad = int(s0 * rng.uniform(0.25, 0.6)) + 2
    gap = int(s0 * rng.uniform(0.1, 0.3))
    widths = [m[2][2] - m[2][0] for m in masks]
    heights = [m[2][3] - m[2][1] for m in masks]
    lw = max(widths) + 2 * pad
    lh = sum(heights) + gap * (len(masks) - 1) + 2 * pad
    layer = Layer(lw, lh)
    bg = np.asarray(wall_col, np.float32)
    if panel:
        bg = hsv(rng.random(), rng.uniform(0.4, 1), rng.uniform(0.25, 0.95))
        if rng.random() < 0.5:
            bg = np.full(3, rng.choice([rng.uniform(10, 50), rng.uniform(220, 250)]), np.float32)
        if rng.random() < 0.3:  # a frame in the text colour family
            layer.ops.append((np.ones((lh, lw), np.float32), contrast_color(rng, bg, 60)))
            b = max(2, pad // 4)
            inner = np.zeros((lh, lw), np.float32)
            inner[b:-b, b:-b] = 1
            layer.ops.append((inner, bg))
        else:
            kind = st._pick(rng, ("solid", "solid", "gradient", "noise"))
            layer.ops.append((np.ones((lh, lw), np.float32), background(rng, lh, lw, bg, kind)))
    fg = contrast_color(rng, bg, 110 if not tiny else 90)
    align = st._pick(rng, ("center", "center", "left"))
    y = pad
    for (fill, outer, (bx0, by0, bx1, by1)), text in zip(masks, texts):
        x = pad + ((lw - 2 * pad) - (bx1 - bx0)) // 2 if align == "center" else pad
        ox, oy = x - bx0, y - by0
        canvas_fill = np.zeros((lh, lw), np.float32)
        blend(canvas_fill[..., None], fill, np.ones(1, np.float32), ox, oy)
        if stroke:
            canvas_out = np.zeros((lh, lw), np.float32)
            blend(canvas_out[..., None], outer, np.ones(1, np.float32), ox, oy)
            layer.ops.append((canvas_out, np.full(3, 255.0 if luminance(fg) < 128 else 0.0, np.float32)))
        elif rng.random() < 0.2:  # drop shadow
            sh = np.roll(canvas_fill, (max(1, sizes[0] // 20),) * 2, axis=(0, 1)) * 0.6
            layer.ops.append((sh, np.zeros(3, np.float32)))
        layer.ops.append((canvas_fill, fg))
        layer.quads.append((box_quad(x, y, x + bx1 - bx0, y + by1 - by0), text, tiny))
        y += (by1 - by0) + gap
    return layer


def _sign_scene(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, list]:
    scale = min(w / 640, h / 480)
    canvas = _wall(rng, w, h)
    wall_col = canvas.reshape(-1, 3).mean(0)
    boxes: list[tuple[float, float, float, float]] = []
    quads: list = []
    want = int(rng.integers(1, 6))
    n_tiny = int(rng.integers(1, 3)) if rng.random() < 0.35 else 0
    placed = 0
    for _ in range(4 * (want + n_tiny)):
        if placed >= want and n_tiny == 0:
            break
        tiny = placed >= 1 and n_tiny > 0 and (placed >= want or rng.random() < 0.3)
        layer = _sign_layer(rng, scale, 0.8 * w, tiny, wall_col)
        angle = 0.0 if rng.random() < 0.25 else rng.uniform(-15, 15)
        M = affine(angle, rng.uniform(-0.15, 0.15), (layer.w / 2, layer.h / 2), (0, 0))
        fp = (M[:, :2] @ layer.footprint().T).T
        lo, hi = fp.min(0), fp.max(0)
        m = 4
        if hi[0] - lo[0] > w - 2 * m or hi[1] - lo[1] > h - 2 * m:
            continue
        for _ in range(8):
            cx = rng.uniform(m - lo[0], w - m - hi[0])
            cy = rng.uniform(m - lo[1], h - m - hi[1])
            box = (cx + lo[0] - 3, cy + lo[1] - 3, cx + hi[0] + 3, cy + hi[1] + 3)
            if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes):
                break
        else:
            continue
        boxes.append(box)
        M[:, 2] = (cx, cy)
        quads += place(canvas, layer, M)
        if tiny:
            n_tiny -= 1
        else:
            placed += 1
    return canvas, quads


# ---------------------------------------------------------------- public
def render_det_sample(rng: np.random.Generator, domain: str = "sign",
                      size: tuple[int, int] = (640, 480)) -> tuple[np.ndarray, list]:
    """Render one detection image.

    Args:
        rng: The only source of randomness.
        domain: ``receipt``, ``sign``, ``mixed`` (picks one of the two per image) or ``dotmatrix``
            (a receipt scene printed in dots).
        size: Output (width, height).

    Returns:
        (BGR uint8 image, [(quad int32 (4, 2) clockwise from top-left, text, dont_care), ...]).
    """
    w, h = int(size[0]), int(size[1])
    dom = resolve_domain(rng, domain)
    if dom == "receipt":
        canvas, quads = _receipt_scene(rng, w, h)
        img, quads = camera(rng, canvas, quads, persp=0.06)
    elif dom == "dotmatrix":
        canvas, quads = _receipt_scene(rng, w, h, dots=True)
        img, quads = camera(rng, canvas, quads, persp=0.06)
    else:
        canvas, quads = _sign_scene(rng, w, h)
        img, quads = camera(rng, canvas, quads, persp=0.14)
    return img, finalize_quads(quads, w, h)


def render_word(rng: np.random.Generator, domain: str = "sign", text: str | None = None,
                height: tuple[int, int] = (32, 64)) -> tuple[np.ndarray, str]:
    """Render one tight word crop (BGR uint8, height in ``height``) and its text."""
    import cv2

    dom = resolve_domain(rng, domain)
    text = text if text is not None else st.domain_text(rng, dom)
    if dom == "receipt":
        font_name = pick_font(rng, RECEIPT_FONTS)
        bg = np.full(3, rng.uniform(200, 250), np.float32) + rng.uniform(-6, 6, 3).astype(np.float32)
        fg = np.full(3, rng.uniform(10, 80), np.float32)
        kind, angle, jitter = "noise", rng.uniform(-2, 2), 0.04
    elif dom == "dotmatrix":  # impact-printed slip: off-white paper, worn ribbon (grey/blue/purple ink)
        font_name = st._pick(rng, ("mono", "mono", "mono_bold", "sans"))
        bg = np.full(3, rng.uniform(205, 250), np.float32) + rng.uniform(-8, 8, 3).astype(np.float32)
        fg = np.array([rng.uniform(60, 150), rng.uniform(20, 90), rng.uniform(20, 110)], np.float32)
        if rng.random() < 0.5:  # black ribbon
            fg = np.full(3, rng.uniform(10, 90), np.float32)
        kind, angle, jitter = "noise", rng.uniform(-2, 2), 0.04
    else:
        font_name = pick_font(rng, SIGN_FONTS)
        bg = hsv(rng.random(), rng.uniform(0.3, 1), rng.uniform(0.25, 0.95))
        fg = contrast_color(rng, bg)
        kind = st._pick(rng, ("solid", "gradient", "noise", "brick", "stripes"))
        angle, jitter = rng.uniform(-6, 6), 0.12
    s = int(rng.uniform(16, 60))
    fill, _, (bx0, by0, bx1, by1) = text_mask(text, get_font(font_name, s))
    if dom == "dotmatrix":  # ~9-12 dot rows per line of text, each dot its own ink density
        p = max(2, int(round(s / rng.uniform(8, 11))))
        fill = dot_matrix(fill, p, rng.uniform(0.35, 1.0, (-(-fill.shape[0] // p), -(-fill.shape[1] // p))))
    m = s
    ph, pw = fill.shape[0] + 2 * m, fill.shape[1] + 2 * m
    patch = background(rng, ph, pw, bg, kind)
    blend(patch, fill, fg, m, m)
    quad = box_quad(m + bx0, m + by0, m + bx1, m + by1).astype(np.float32)
    th = by1 - by0
    # rotate around the centre, jitter the corners (perspective), then crop with small padding
    c = quad.mean(0)
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]], np.float32)
    dst = (quad - c) @ rot.T + c + rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * th
    pads = rng.uniform(0.02, 0.25, 4) * th
    lo = dst.min(0) - pads[:2]
    hi = dst.max(0) + pads[2:]
    dst -= lo
    H = cv2.getPerspectiveTransform(quad, dst.astype(np.float32))
    crop = cv2.warpPerspective(patch, H, (int(np.ceil(hi[0] - lo[0])), int(np.ceil(hi[1] - lo[1]))),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    crop, _ = camera(rng, crop, [], persp=0.0, blur=0.6)
    out_h = int(rng.integers(height[0], height[1] + 1))
    out_w = max(8, int(round(crop.shape[1] * out_h / crop.shape[0])))
    interp = cv2.INTER_AREA if out_h < crop.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_w, out_h), interpolation=interp), text
