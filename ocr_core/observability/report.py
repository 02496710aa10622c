"""One self-contained HTML report: inline CSS, images as base64 data URIs, no external assets.

``write_report(path, title, sections)`` takes a list of section dicts::

    {"title": str,
     "text": str | None,                        # a paragraph; multi-line text is shown preformatted
     "table": list[dict] | None,                # rows; columns = keys in first-seen order
     "images": list[path | bytes | (caption, path | bytes)] | None,
     "pairs": list[((caption, image), (caption, image))] | None,   # side by side, one row each
     "links": list[(label, href)] | None}       # relative paths or file names (no external assets)

``training_report(save_dir)`` builds the report of a finished training directory from the
``training_summary.json``, ``curves.png`` and ``eval_vis/`` written by the training run.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;background:#fafbfc;padding:0 16px}
h1{font-size:24px;border-bottom:2px solid #3b6fd8;padding-bottom:6px}
h2{font-size:18px;margin-top:28px;color:#2a3f6b}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:8px 16px 14px;margin:14px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #d5d9e0;padding:3px 9px;text-align:right}
th{background:#eef2f9;font-weight:600}
td.s,th.s{text-align:left}
tr:nth-child(even) td{background:#f7f8fa}
figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #d5d9e0}
figcaption{font-size:12px;color:#555}
pre{background:#f3f4f6;padding:8px;font-size:12px;overflow-x:auto}
.meta{color:#667;font-size:12px}
.pair{display:flex;gap:10px;margin:6px 0}
.pair figure{flex:1;margin:0}
"""

_MIME = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"<svg": "image/svg+xml"}


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return str(v)


def _table(rows: Sequence[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    if not cols:
        return "<p class=meta>(empty)</p>"

    def cls(v: Any) -> str:
        return "" if isinstance(v, (int, float)) and not isinstance(v, bool) else " class=s"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td{cls(r.get(c))}>{html.escape(_fmt(r.get(c)))}</td>" for c in cols)
                   + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def data_uri(image: str | Path | bytes) -> str:
    """A ``data:`` URI of an image file or its bytes (type sniffed from the magic bytes)."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    mime = next((m for magic, m in _MIME.items() if data.lstrip()[: len(magic)] == magic), "image/png")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(item: Any) -> str:
    caption, image = item if isinstance(item, tuple) else (None, item)
    if caption is None and not isinstance(image, bytes):
        caption = Path(image).name
    cap = f"<figcaption>{html.escape(str(caption))}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(image)}" alt="{html.escape(str(caption or "image"))}">{cap}</figure>'


def _section(sec: dict[str, Any]) -> str:
    parts = [f"<section>\n<h2>{html.escape(str(sec.get('title') or ''))}</h2>"]
    text = sec.get("text")
    if text:
        text = str(text)
        parts.append(f"<pre>{html.escape(text)}</pre>" if "\n" in text.strip() else f"<p>{html.escape(text)}</p>")
    if sec.get("table"):
        parts.append(_table(sec["table"]))
    for item in sec.get("images") or []:
        parts.append(_figure(item))
    for left, right in sec.get("pairs") or []:
        parts.append(f'<div class=pair>{_figure(left)}{_figure(right)}</div>')
    if sec.get("links"):
        parts.append("<ul>" + "".join(f'<li><a href="{html.escape(str(href))}">{html.escape(str(label))}</a></li>'
                                      for label, href in sec["links"]) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def render_report(title: str, sections: Sequence[dict[str, Any]]) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    body = "\n".join(_section(s) for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>{html.escape(title)}</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p class=meta>generated {when} by ocrflow</p>\n{body}\n</body>\n</html>\n")


def write_report(path: str | Path, title: str, sections: Sequence[dict[str, Any]]) -> Path:
    """Write one self-contained HTML file and return its path.

    Args:
        path: Output ``.html`` file (parent directories are created).
        title: Page title and heading.
        sections: Dicts with ``title`` and optional ``text``, ``table`` (list of row dicts)
            and ``images`` (paths, bytes, or ``(caption, path_or_bytes)`` tuples).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(title, sections), encoding="utf-8")
    return path


def training_report(save_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write ``<save_dir>/report.html`` for a finished training directory and return its path."""
    save_dir = Path(save_dir)
    summary_file = save_dir / "training_summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.exists() else {}
    sections: list[dict[str, Any]] = []
    labels = summary.get("labels") or {}
    evals = summary.get("evals") or []
    epochs = summary.get("epochs") or []
    overview = {"save_dir": str(save_dir), **labels}
    if summary.get("loss"):
        overview["global_step"] = summary["loss"][-1][0]
    sections.append({"title": "Run", "table": [overview]})
    if summary.get("best_metric"):
        sections.append({"title": "Best metric", "table": [summary["best_metric"]]})
    quality_file = save_dir / "data_quality.json"  # written by engine.run from data.label_quality
    if quality_file.exists():
        quality = json.loads(quality_file.read_text(encoding="utf-8"))
        rows = [{"set": name, **{k: v for k, v in q.items() if k != "unknown_chars"},
                 "unknown_chars": " ".join(f"{c!r}x{n}" for c, n in list((q.get("unknown_chars") or {}).items())[:20])}
                for name, q in quality.items()]
        sections.append({"title": "Training data quality (label lines skipped, characters dropped, texts rejected)",
                         "table": rows})
    if evals:
        sections.append({"title": "Evaluations", "table": evals})
    if epochs:
        keep = ("epoch", "steps", "samples", "seconds", "ips", "data_time", "step_time")
        rows = [{k: e[k] for k in keep if k in e} | {k: v for k, v in e.items() if k not in keep} for e in epochs]
        sections.append({"title": "Per-epoch timings (data_time / step_time: seconds per step)", "table": rows})
    if summary.get("checkpoints"):
        sections.append({"title": "Checkpoint saves (seconds)", "table": summary["checkpoints"]})
    if (save_dir / "curves.png").exists():
        sections.append({"title": "Curves", "images": [save_dir / "curves.png"]})
    vis = save_dir / "eval_vis"
    det = sorted(vis.glob("det_*.png")) if vis.is_dir() else []
    if det:
        sections.append({"title": "Detection samples (last evaluation)", "images": det,
                         "text": "green = matched, red = false positive, blue = missed, grey = don't care"})
    if (vis / "rec_errors.png").exists():
        sections.append({"title": "Recognition errors (last evaluation)", "images": [vis / "rec_errors.png"]})
    if (save_dir / "config.yml").exists():
        sections.append({"title": "Resolved config", "text": (save_dir / "config.yml").read_text(encoding="utf-8")})
    title = f"OCRFlow training report: {labels.get('job') or save_dir.name}"
    return write_report(path or save_dir / "report.html", title, sections)


__all__ = ["data_uri", "render_report", "training_report", "write_report"]
