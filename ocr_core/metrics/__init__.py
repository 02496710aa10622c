"""Metrics registered by name.

A metric accumulates per batch (``metric(post_result, batch)``), exposes summable
``counters()`` so ranks can all-reduce them, and computes ``get_metric()`` from the counters.
"""

from ocr_core.registry import Registry

METRICS = Registry(
    "metric",
    [
        "ocr_core.metrics.det_metric",
        "ocr_core.metrics.rec_metric",
        "ocr_core.metrics.distillation_metric",
    ],
)

__all__ = ["METRICS"]
