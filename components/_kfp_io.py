"""Small helpers shared by the component functions (no kfp import: artifacts are duck-typed).

An artifact that names data in object storage is a tiny JSON file ``{"uri", "digest", "kind",
"counts", "extra"}`` (see ``components.steps.common.manifest_info``); the same fields go into its metadata so
the KFP UI shows them.
"""

from __future__ import annotations

import json
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
