"""Locality-aware NMS of EAST on whole arrays of quads.

The algorithm is PaddleOCR's ``locality_aware_nms.py`` (after the EAST paper): scan the per-pixel
quads in row order, merge each into the running quad while their IoU exceeds the threshold (score
weighted average, scores summed), then run a greedy NMS on the merged quads. The scan is
sequential by definition; here it is computed in bulk and checked:

1. guess where the runs break, from the overlap of each quad's bounding box with its neighbour's;
2. compute the running merge of every guessed run at once (one numpy step per position in a run,
   with the reference's arithmetic, so the merged values are bit for bit the sequential ones);
3. check every guess against the IoU with the running quad it really meets; from the first wrong
   guess the scan goes on one quad at a time until it reaches a guessed break that holds, after
   which the bulk results are valid again.

IoU: strictly convex quads (EAST's rectangles and their averages) are clipped against each other
(Sutherland-Hodgman, float64); any other quad (concave, self-intersecting, degenerate) goes through
shapely. A quad counts as its convex hull in both paths. Most pairs never need the clipping: a
bound on the IoU from each side already settles them (:func:`overlaps`). The greedy NMS only
measures pairs whose bounding boxes overlap.
"""

from __future__ import annotations

import numpy as np
import shapely

_SLOTS = 8  # a convex quad clipped by 4 half-planes has at most 8 vertices
_MARGIN = 1e-9  # the bounds decide only where the IoU is this far from the threshold


def _cross(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ax * by - ay * bx


def _next(v: np.ndarray) -> np.ndarray:
    """Each row's values moved one slot left, cyclically (vertex i+1 in slot i)."""
    return np.concatenate([v[:, 1:], v[:, :1]], axis=1)


def _row_sum(v: np.ndarray) -> np.ndarray:
    return v @ np.ones(v.shape[1])  # far faster than .sum(1) over a short axis


class Quads:
    """Quads prepared for IoU (column-wise: reductions over a short axis are slow in numpy).

    ``x``, ``y``: [N, 4] vertices, counter-clockwise with y up; ``area`` (of the convex hull);
    ``convex`` (strictly convex, the clipping path); ``perimeter``; bounding box ``x0 y0 x1 y1``.
    """

    def __init__(self, quads: np.ndarray) -> None:
        q = np.asarray(quads, np.float64)
        x, y = q[:, 0:8:2].copy(), q[:, 1:8:2].copy()
        ex, ey = _next(x) - x, _next(y) - y
        turn = _cross(ex, ey, _next(ex), _next(ey))
        twice_area = _row_sum(_cross(x, y, _next(x), _next(y)))
        lo_turn = np.minimum(np.minimum(turn[:, 0], turn[:, 1]), np.minimum(turn[:, 2], turn[:, 3]))
        hi_turn = np.maximum(np.maximum(turn[:, 0], turn[:, 1]), np.maximum(turn[:, 2], turn[:, 3]))
        cw = (hi_turn < 0) & (twice_area < 0)
        self.convex = ((lo_turn > 0) & (twice_area > 0)) | cw
        if cw.any():
            x[cw], y[cw] = x[cw, ::-1], y[cw, ::-1]
        self.x, self.y = x, y
        self.area = np.abs(twice_area) / 2
        if not self.convex.all():
            self.area[~self.convex] = _hull_area(x[~self.convex], y[~self.convex])
        self.perimeter = _row_sum(np.sqrt(ex * ex + ey * ey))
        self.x0 = np.minimum(np.minimum(x[:, 0], x[:, 1]), np.minimum(x[:, 2], x[:, 3]))
        self.x1 = np.maximum(np.maximum(x[:, 0], x[:, 1]), np.maximum(x[:, 2], x[:, 3]))
        self.y0 = np.minimum(np.minimum(y[:, 0], y[:, 1]), np.minimum(y[:, 2], y[:, 3]))
        self.y1 = np.maximum(np.maximum(y[:, 0], y[:, 1]), np.maximum(y[:, 2], y[:, 3]))


def _hulls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return shapely.convex_hull(shapely.multipoints(np.stack([x, y], axis=2)))


def _hull_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return shapely.area(_hulls(x, y))


def _clip_area(sx: np.ndarray, sy: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area of subject ∩ clip for pairs of convex counter-clockwise quads (vertices ``[N, 4]``),
    Sutherland-Hodgman: the subject is clipped by each clip edge's half-plane in turn.

    Each polygon has ``_SLOTS`` slots; slots past its vertex count repeat its first vertex, so they
    add zero-length edges and nothing to the area. Returns (area, ok); ``ok`` is False where a
    polygon outgrew its slots (possible only through rounding on near-degenerate input).
    """
    n = len(sx)
    rows = np.arange(n)[:, None]
    x = np.concatenate([sx, np.repeat(sx[:, :1], _SLOTS - 4, 1)], 1)
    y = np.concatenate([sy, np.repeat(sy[:, :1], _SLOTS - 4, 1)], 1)
    real = np.broadcast_to(np.arange(_SLOTS) < 4, (n, _SLOTS))
    ok = np.ones(n, bool)
    ox, oy = np.empty((n, 2 * _SLOTS)), np.empty((n, 2 * _SLOTS))
    valid = np.empty((n, 2 * _SLOTS), bool)
    upper = np.triu(np.ones((2 * _SLOTS, 2 * _SLOTS)))  # valid @ upper: running count
    for j in range(4):
        ax, ay = cx[:, j:j + 1], cy[:, j:j + 1]
        ex, ey = cx[:, (j + 1) % 4, None] - ax, cy[:, (j + 1) % 4, None] - ay
        d = ex * (y - ay) - ey * (x - ax)  # >= 0: inside (left of the edge)
        inside = d >= 0
        crosses = inside != _next(inside)
        t = d / np.where(crosses, d - _next(d), 1.0)
        ox[:, 0::2], ox[:, 1::2] = x, x + t * (_next(x) - x)
        oy[:, 0::2], oy[:, 1::2] = y, y + t * (_next(y) - y)
        valid[:, 0::2], valid[:, 1::2] = real & inside, crosses
        pos = (valid @ upper).astype(np.intp)
        count = pos[:, -1]
        ok &= count <= _SLOTS
        dest = np.where(valid, np.minimum(pos - 1, _SLOTS), _SLOTS)  # column _SLOTS collects the rest
        x, y = np.zeros((n, _SLOTS + 1)), np.zeros((n, _SLOTS + 1))
        x[rows, dest], y[rows, dest] = ox, oy
        real = np.arange(_SLOTS) < count[:, None]
        x, y = np.where(real, x[:, :_SLOTS], x[:, :1]), np.where(real, y[:, :_SLOTS], y[:, :1])
    area = _row_sum(_cross(x, y, _next(x), _next(y))) / 2
    return np.maximum(area, 0.0), ok


def iou(a: Quads, ia: np.ndarray, b: Quads, ib: np.ndarray) -> np.ndarray:
    """IoU of quads ``a[ia[k]]`` and ``b[ib[k]]`` (convex hulls); 0 where either area is 0."""
    area_a, area_b = a.area[ia], b.area[ib]
    inter = np.zeros(len(ia))
    touch = ((np.maximum(a.x0[ia], b.x0[ib]) < np.minimum(a.x1[ia], b.x1[ib]))
             & (np.maximum(a.y0[ia], b.y0[ib]) < np.minimum(a.y1[ia], b.y1[ib])) & (area_a > 0) & (area_b > 0))
    fast = touch & a.convex[ia] & b.convex[ib]
    if fast.any():
        fa, fb = ia[fast], ib[fast]
        got, ok = _clip_area(a.x[fa], a.y[fa], b.x[fb], b.y[fb])
        inter[fast] = got
        fast[np.flatnonzero(fast)[~ok]] = False
    slow = touch & ~fast
    if slow.any():
        sa, sb = ia[slow], ib[slow]
        inter[slow] = shapely.area(shapely.intersection(_hulls(a.x[sa], a.y[sa]), _hulls(b.x[sb], b.y[sb])))
    union = area_a + area_b - inter
    good = (area_a > 0) & (area_b > 0) & (union > 0)
    return np.where(good, inter / np.where(good, union, 1.0), 0.0)


def overlaps(a: Quads, ia: np.ndarray, b: Quads, ib: np.ndarray, thresh: float) -> np.ndarray:
    """``iou(...) > thresh``, measuring only the pairs that two bounds leave open.

    Upper bound: the intersection is at most the bounding boxes' overlap and the smaller area.
    Lower bound: with ``d`` the largest distance between paired vertices, every point of one convex
    quad lies within ``d`` of the other, so the other contains this one eroded by ``d``, whose area
    is at least ``area - d * perimeter``. A bound decides only where it clears the threshold by
    ``_MARGIN``, far beyond float64 rounding, so the answer is the measured IoU's in every case.
    """
    if not 0 <= thresh < 1:
        return iou(a, ia, b, ib) > thresh
    area_a, area_b = a.area[ia], b.area[ib]
    box = (np.clip(np.minimum(a.x1[ia], b.x1[ib]) - np.maximum(a.x0[ia], b.x0[ib]), 0, None)
           * np.clip(np.minimum(a.y1[ia], b.y1[ib]) - np.maximum(a.y0[ia], b.y0[ib]), 0, None))
    inter_hi = np.minimum(box, np.minimum(area_a, area_b))
    no = inter_hi <= (thresh - _MARGIN) * (area_a + area_b - inter_hi)
    dx, dy = a.x[ia] - b.x[ib], a.y[ia] - b.y[ib]
    dist = dx * dx + dy * dy
    shift = np.sqrt(np.maximum(np.maximum(dist[:, 0], dist[:, 1]), np.maximum(dist[:, 2], dist[:, 3])))
    inter_lo = np.maximum(area_a - shift * a.perimeter[ia], area_b - shift * b.perimeter[ib])
    inter_lo = np.where(a.convex[ia] & b.convex[ib], np.maximum(inter_lo, 0.0), 0.0)
    yes = inter_lo > (thresh + _MARGIN) * (area_a + area_b - inter_lo)
    out = yes & ~no
    open_ = np.flatnonzero(~(yes | no))
    if open_.size:
        out[open_] = iou(a, ia[open_], b, ib[open_]) > thresh
    return out


def quad_iou(g: np.ndarray, p: np.ndarray) -> float:
    """IoU of two quads (first 8 values of each row: x1, y1, ..., x4, y4)."""
    quads = Quads(np.stack([np.asarray(g, np.float64)[:8], np.asarray(p, np.float64)[:8]]))
    return float(iou(quads, np.array([0]), quads, np.array([1]))[0])


def weighted_merge(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Score-weighted average of quads ``g`` and ``p`` (rows or ``[N, 9]`` arrays); scores summed."""
    out = np.array(g, np.float64, copy=True)
    gs, ps = g[..., 8:9], p[..., 8:9]
    out[..., :8] = (gs * g[..., :8] + ps * p[..., :8]) / (gs + ps)
    out[..., 8] = g[..., 8] + p[..., 8]
    return out


def _touching_pairs(quads: Quads) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` whose bounding boxes overlap (touching counts), sorted by ``i``: a
    sweep down the y axis, so only boxes on the same text lines are ever paired up."""
    n = len(quads.area)
    order = np.argsort(quads.y0, kind="stable")
    top, bottom = quads.y0[order], quads.y1[order]
    end = np.searchsorted(top, bottom, side="right")  # sorted positions a+1..end-1 start within a's span
    count = np.maximum(end - np.arange(n) - 1, 0)
    a = np.repeat(np.arange(n), count)
    b = a + 1 + np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count)
    i, j = order[a], order[b]
    x_hit = (quads.x0[i] <= quads.x1[j]) & (quads.x1[i] >= quads.x0[j])
    i, j = i[x_hit], j[x_hit]
    i, j = np.minimum(i, j), np.maximum(i, j)
    by_i = np.argsort(i, kind="stable")
    return i[by_i], j[by_i]


def standard_nms(boxes: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy NMS on ``[N, 9]`` quads by score (column 8), highest first. The pairs that can
    suppress (bounding boxes overlapping; every pair when ``thresh < 0``) are decided up front."""
    ranked = boxes[np.argsort(boxes[:, 8])[::-1]]
    n = len(ranked)
    quads = Quads(ranked)
    if thresh >= 0:
        i, j = _touching_pairs(quads)
    else:
        i, j = np.triu_indices(n, 1)
    hit = overlaps(quads, i, quads, j, thresh)
    i, j = i[hit], j[hit]  # i ranks above j; sorted by i, as np.nonzero gives them
    bounds = np.searchsorted(i, np.arange(n + 1))
    alive = np.ones(n, bool)
    for k in range(n):
        if alive[k]:
            alive[j[bounds[k]:bounds[k + 1]]] = False
    return ranked[alive]
def _run_merges(boxes: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Running merge at every position for runs that start where ``breaks`` is True (position 0
    always starts one): row k is the merge of its run's rows up to k, in order."""
    run_start = np.maximum.accumulate(np.where(breaks, np.arange(len(boxes)), 0))
    step = np.arange(len(boxes)) - run_start
    order = np.argsort(step, kind="stable")
    bounds = np.cumsum(np.bincount(step))
    state = boxes.copy()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        k = order[lo:hi]
        state[k] = weighted_merge(boxes[k], state[k - 1])
    return state


def nms_locality(polys: np.ndarray, thresh: float = 0.3) -> np.ndarray:
    """Locality-aware NMS of EAST on ``[N, 9]`` quads (row order): merge runs, then standard NMS."""
    boxes = np.asarray(polys, np.float64).reshape(-1, 9)
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 9), np.float64)
    # guess: a run goes on while neighbours' bounding boxes overlap by more than the threshold
    lo, hi = boxes[:, 0:8:2].min(1), boxes[:, 0:8:2].max(1)
    top, bottom = boxes[:, 1:8:2].min(1), boxes[:, 1:8:2].max(1)
    box_area = (hi - lo) * (bottom - top)
    inter = (np.clip(np.minimum(hi[1:], hi[:-1]) - np.maximum(lo[1:], lo[:-1]), 0, None)
             * np.clip(np.minimum(bottom[1:], bottom[:-1]) - np.maximum(top[1:], top[:-1]), 0, None))
    merge = np.zeros(n, bool)
    merge[1:] = inter > thresh * (box_area[1:] + box_area[:-1] - inter)
    state = _run_merges(boxes, ~merge)
    truth = np.zeros(n, bool)
    rows = np.arange(n - 1)
    truth[1:] = overlaps(Quads(boxes[1:]), rows, Quads(state[:-1]), rows, thresh)
    k = _first_mismatch(merge, truth, 1)
    one = np.zeros(1, int)
    while k < n:
        cur = state[k - 1]
        while k < n:  # one at a time until a guessed break holds
            m = bool(overlaps(Quads(boxes[k:k + 1]), one, Quads(cur[None]), one, thresh)[0])
            cur = weighted_merge(boxes[k], cur) if m else boxes[k]
            state[k] = cur
            was_break = not merge[k]
            merge[k] = m
            k += 1
            if was_break and not m:
                break
        k = _first_mismatch(merge, truth, k)
    ends = np.flatnonzero(np.append(~merge[1:], True))
    return standard_nms(state[ends], thresh)


def _first_mismatch(guess: np.ndarray, truth: np.ndarray, start: int) -> int:
    bad = np.flatnonzero(guess[start:] != truth[start:])
    return start + int(bad[0]) if bad.size else len(guess)
