"""Small helpers shared by the component functions (no kfp import: artifacts are duck-typed).

An artifact that names data in object storage is a tiny JSON file ``{"uri", "digest", "kind",
"counts", "extra"}`` (see ``components.steps.common.manifest_info``); the same fields go into its metadata so
the KFP UI shows them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ocr_core.storage.manifest import Manifest


def write_info(artifact: Any, manifest: Manifest) -> dict[str, Any]:
    from components.steps.common import manifest_info

    info = manifest_info(manifest)
    with open(artifact.path, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1, default=str)
    artifact.metadata.update({"uri": info["uri"], "digest": info["digest"], "kind": info["kind"]})
    return info


def read_info(artifact: Any) -> dict[str, Any]:
    with open(artifact.path, encoding="utf-8") as fh:
        return json.load(fh)


def write_json(artifact: Any, data: Mapping[str, Any]) -> None:
    with open(artifact.path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, default=str)


# One naming for every Metrics artifact, so the KFP UI's run-compare view lines runs up:
# ``[<model>_]<metric>``: the metric is the evaluator's own key (det: precision/recall/hmean, rec:
# acc/norm_edit_dis, both fps), the prefix says whose number it is; the export parity gate is parity_*.
# tests/pipeline/test_ui_artifacts.py drives every component that logs metrics (every Output[Metrics]
# of components/*.py) and checks each key: this naming, or one of COUNTERS.
METRIC_NAMES = ("hmean", "precision", "recall", "acc", "norm_edit_dis", "fps", "parity_max_abs_diff", "parity_passed")
MODEL_PREFIXES = ("candidate", "off_the_shelf", "production", "start", "champion", "eager", "onnx", "tensorrt")
# The keys outside that naming, all of them: not comparison metrics (no model's score to line up
# against another run's), but a step's counters and decisions and the dataset's own counts. Their
# names are fixed, so the run-compare view still shows them side by side.
COUNTERS = (
    "global_step", "best_epoch", "best_step",  # train: where the best checkpoint is (best_metric's other keys)
    "margin", "required_margin", "publish",  # gate: the publish decision and what it was measured against
    "is_new",  # check_new_data: the retrain decision (1.0 new data, 0.0 the production model's data)
    # validate_data (components.steps.data.validate_dataset): per label file ({det,rec}_{train,test}) its
    # lines and bad lines (det also its boxes), and bad lines / lines over all of them
    "det_train_lines", "det_train_bad_lines", "det_train_boxes", "det_test_lines", "det_test_bad_lines",
    "det_test_boxes", "rec_train_lines", "rec_train_bad_lines", "rec_test_lines", "rec_test_bad_lines",
    "error_ratio",
)
# KFP UI: the Markdown viewer truncates past 50 * 1000 * 8 characters (frontend MarkdownViewer.tsx,
# MAX_MARKDOWN_STR_LENGTH); the HTML viewer (an iframe srcdoc) has no limit of its own: ours is 2 MB.
MARKDOWN_MAX_CHARS = 400_000
HTML_MAX_BYTES = 2_000_000


def inline_image(png: bytes, max_side: int = 800, quality: int = 85) -> str:
    """A picture for an HTML artifact: at most ``max_side`` pixels a side, as a JPEG ``data:`` URI."""
    import base64

    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode("ascii")


_INLINED = re.compile(r"""(src=["'])data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)""")
_SHRINK = ((800, 85), (480, 75), (240, 60))  # (max side, JPEG quality), tried in order until the page fits


def fit_html(text: str, source: str = "", max_bytes: int = HTML_MAX_BYTES) -> str:
    """A self-contained HTML page (pictures inlined as ``data:`` PNG/JPEG) made fit for an HTML artifact.

    Every inlined picture becomes a JPEG of at most 800 px a side (:func:`inline_image`), smaller
    while the page passes ``max_bytes``. A page that does not fit even so (a huge table or text) is
    replaced by a short one naming its size and ``source`` (where the full page is).
    """
    import base64

    def shrunk(side: int, quality: int) -> str:
        def one(m: re.Match[str]) -> str:
            try:
                return m.group(1) + inline_image(base64.b64decode(m.group(2)), side, quality)
            except Exception:  # noqa: BLE001 - not a decodable picture: left out, not left big
                return m.group(1) + "data:,"

        return _INLINED.sub(one, text)

    for side, quality in _SHRINK:
        out = shrunk(side, quality)
        if len(out.encode()) <= max_bytes:
            return out
    import html

    return (f"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>report too large</title>\n<body>\n"
            f"<p>The report is {len(text.encode())} bytes, {len(out.encode())} with its pictures at 240 px: over the "
            f"{max_bytes} bytes an HTML artifact may hold here. The full report: {html.escape(source)}</p>\n"
            "</body></html>\n")


def training_report(model: Manifest) -> str:
    """A training run's ``report.html`` from its model prefix (the engine writes it beside the
    checkpoints, rank 0 uploads it with them), or a short page saying the run wrote none."""
    import html

    from ocr_core.storage.client import open_store
    from ocr_core.storage.uri import join_uri

    if "report.html" in {f.path for f in model.files}:
        uri = join_uri(model.prefix, "report.html")
        return open_store(uri).get_bytes(uri).decode("utf-8")
    return (f"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>no training report</title>\n<body>\n"
            f"<p>{html.escape(model.prefix)} holds no report.html (the engine logs why in train.log there).</p>\n"
            "</body></html>\n")


def log_metrics(metrics: Any, values: Mapping[str, Any], prefix: str = "") -> None:
    """Numbers only, as floats (kfp.local returns ints as floats anyway)."""
    for k, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(f"{prefix}{k}", float(v))


def prh_table(results: Mapping[str, Mapping[str, float] | None], keys: tuple[str, ...]) -> str:
    """A Markdown table: one row per model label, one column per metric key."""
    rows = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, m in results.items():
        if m is None:
            rows.append(f"| {label} | " + " | ".join("-" for _ in keys) + " |")
        else:
            rows.append(f"| {label} | " + " | ".join(f"{float(m.get(k, 0.0)):.4f}" for k in keys) + " |")
    return "\n".join(rows) + "\n"
