"""The one export entry point: ONNX export, then (optionally) the parity gate.

``ocrflow export [--check]`` and the pipeline's export step both call :func:`export_checked`, so the
exported graph, its metadata and the gate that accepts it are the same code on a laptop and in the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ocr_core.export.onnx_export import DEFAULT_OPSET, ExportResult, export_onnx
from ocr_core.export.parity import ParityReport, check_parity


@dataclass
class CheckedExport:
    """An export and, when the gate ran, its report."""

    result: ExportResult
    parity: Optional[ParityReport] = None


def export_checked(cfg: dict[str, Any], out_dir: str | Path, checkpoint: Optional[str] = None,
                   role: Optional[str] = None, opset: int = DEFAULT_OPSET, check: bool = True,
                   with_metric: bool = True, atol: float = 1e-4, metric_tol: float = 0.5) -> CheckedExport:
    """Export ``cfg``'s model to ``out_dir`` and, with ``check``, gate it (eager vs onnxruntime).

    Args:
        cfg: The resolved config; its Eval section (when present) feeds the metric comparison.
        out_dir: Where ``model.onnx`` and ``inference.yml`` go (the gate writes its report there too).
        checkpoint: Weights (default: ``Global.pretrained_model`` / ``Global.checkpoints``).
        role: Sub-model of a distillation checkpoint (default ``Student``).
        opset: ONNX opset (>= 17).
        check: Run :func:`~ocr_core.export.parity.check_parity` on the exported model.
        with_metric: Also compare the Eval metric (eager vs ONNX) when the config has Eval data.
        atol: Largest tolerated absolute tensor difference.
        metric_tol: Largest tolerated metric difference, in percentage points.

    Raises:
        ParityError: the gate failed (nothing is published by callers on failure).
    """
    result = export_onnx(cfg, out_dir, checkpoint=checkpoint, role=role, opset=opset)
    if not check:
        return CheckedExport(result)
    report = check_parity(cfg, result.onnx_path, exported=result.exported, out_dir=out_dir, atol=atol,
                          metric_tol=metric_tol, with_metric=with_metric)
    return CheckedExport(result, report)


__all__ = ["CheckedExport", "export_checked"]
