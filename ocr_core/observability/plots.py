"""Matplotlib (Agg, no global backend switch) pictures: training curves and captioned image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# eval keys that are not quality metrics in [0, 1]
_NOT_METRIC = frozenset({"epoch", "global_step", "fps", "img_s", "best_epoch", "best_step"})


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(str(path), dpi=dpi, format="png")
    return path


def write_curves(path: str | Path, loss_points: Sequence[Sequence[Any]], evals: Sequence[dict[str, Any]],
                 title: str = "training") -> Path:
    """Write ``curves.png``: loss terms per step (left) and eval metrics per step (right).

    Args:
        path: Output PNG.
        loss_points: ``[(global_step, {term: value}), ...]``.
        evals: ``run.history`` entries (``global_step`` plus metric keys).
        title: Figure title.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_eval = fig.subplots(1, 2)
    terms: dict[str, tuple[list[float], list[float]]] = {}
    for step, d in loss_points:
        for k, v in d.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                xs, ys = terms.setdefault(k, ([], []))
                xs.append(float(step))
                ys.append(float(v))
    for k in sorted(terms, key=lambda t: (t != "loss", t)):
        xs, ys = terms[k]
        ax_loss.plot(xs, ys, label=k, linewidth=2.2 if k == "loss" else 1.2, marker="." if len(xs) < 30 else None)
    ax_loss.set_title("loss")
    ax_loss.set_xlabel("global step")
    if terms:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.grid(alpha=0.3)
    names = sorted({k for e in evals for k, v in e.items()
                    if k not in _NOT_METRIC and isinstance(v, (int, float)) and not isinstance(v, bool)})
    for k in names:
        pts = [(float(e.get("global_step", i)), float(e[k])) for i, e in enumerate(evals) if k in e]
        ax_eval.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
    values = [float(e[k]) for e in evals for k in names if k in e]
    if values and all(0.0 <= v <= 1.0 for v in values):
        ax_eval.set_ylim(-0.02, 1.02)
    ax_eval.set_title("evaluation")
    ax_eval.set_xlabel("global step")
    if names:
        ax_eval.legend(fontsize=8)
    else:
        ax_eval.text(0.5, 0.5, "no evaluation", ha="center", va="center", transform=ax_eval.transAxes)
    ax_eval.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def image_grid(path: str | Path, images_bgr: Sequence[np.ndarray], captions: Sequence[str], cols: int = 2,
               title: str | None = None) -> Path:
    """Write a grid of BGR images, each with a caption above it."""
    n = max(1, len(images_bgr))
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 1.3 * rows + (0.4 if title else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, img, cap in zip(axes, images_bgr, captions):
        rgb = np.asarray(img)[..., ::-1] if np.asarray(img).ndim == 3 else np.asarray(img)
        ax.imshow(rgb, cmap="gray" if rgb.ndim == 2 else None)
        ax.set_title(cap, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


__all__ = ["image_grid", "write_curves"]
