"""The one export entry point: ONNX export, then (optionally) the parity gate; with the ``tensorrt``
or ``both`` format also a TensorRT engine behind its own gate.

``ocrflow export [--check] [--format ...]`` and the pipeline's export step both call
:func:`export_checked`, so the exported graph, its metadata and the gates that accept it are the same
code on a laptop and in the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ocr_core.errors import ConfigError
from ocr_core.export.onnx_export import DEFAULT_OPSET, ExportResult, export_onnx
from ocr_core.export.parity import ParityReport, check_parity
from ocr_core.export.tensorrt_parity import TRT_ATOL, TensorRTParityReport
from ocr_core.inference import metadata as md

# ``tensorrt`` keeps the ONNX model as well: the engine is built from it, the system eval runs it, and
# the engine only runs on the GPU (and TensorRT version) it was built for. ``both`` says so explicitly.
EXPORT_FORMATS = ("onnx", "tensorrt", "both")
ENGINE_NAME = "model.engine"


def check_format(fmt: str, key: str = "format") -> str:
    """``fmt`` when it is one of :data:`EXPORT_FORMATS`, else ``ConfigError`` naming ``key``."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}", key)
    return fmt


def needs_tensorrt(fmt: str) -> bool:
    """Whether export format ``fmt`` (checked) builds a TensorRT engine."""
    return check_format(fmt) != "onnx"


@dataclass
class TensorRTOptions:
    """How the engine is built and gated.

    Attributes:
        fp16: Build with the FP16 flag (when the GPU has fast FP16).
        max_batch: Largest batch of the optimisation profile (default det 4, rec 16).
        max_side: Largest det side of the profile.
        atol: The TensorRT gate's tensor tolerance (vs onnxruntime).
    """

    fp16: bool = True
    max_batch: Optional[int] = None
    max_side: int = 2048
    atol: float = TRT_ATOL


@dataclass
class CheckedExport:
    """An export and, when the gates ran, their reports."""

    result: ExportResult
    parity: Optional[ParityReport] = None
    engine: Optional[Path] = None
    tensorrt_parity: Optional[TensorRTParityReport] = None


def add_tensorrt(checked: CheckedExport, cfg: dict[str, Any], out_dir: str | Path,
                 options: Optional[TensorRTOptions] = None, check: bool = True, with_metric: bool = True,
                 metric_tol: float = 0.5) -> CheckedExport:
    """Build ``out_dir/model.engine`` from ``checked``'s ONNX model and, with ``check``, gate it against
    onnxruntime (:func:`~ocr_core.export.tensorrt_parity.check_tensorrt_parity`).

    Raises:
        TensorRTUnavailable: no NVIDIA GPU or no ``tensorrt`` module (the ONNX model is exported).
        ParityError: the engine drifts from the ONNX model.
    """
    from ocr_core.export.tensorrt_build import build_from_onnx
    from ocr_core.export.tensorrt_parity import check_tensorrt_parity

    opts = options or TensorRTOptions()
    result = checked.result
    det = result.exported.model_type == "det"
    mb = opts.max_batch or (4 if det else 16)
    # the gate runs the Eval set at the config's own resize: the profile covers it as well as the deployed one
    cover = md.eval_det_resize(cfg) if det and cfg.get("Eval") else None
    checked.engine = build_from_onnx(result.onnx_path, Path(out_dir) / ENGINE_NAME, fp16=opts.fp16,
                                     batch=(1, min(mb, 1 if det else 6), mb), max_side=opts.max_side,
                                     cover_resize=cover)
    if check:
        onnx_report = checked.parity
        checked.tensorrt_parity = check_tensorrt_parity(
            cfg, result.onnx_path, checked.engine, out_dir=out_dir, atol=opts.atol, metric_tol=metric_tol,
            with_metric=with_metric, onnx_reference=onnx_report.onnx_metric if onnx_report else None,
            skip_metric=onnx_report.metric_skipped if onnx_report else None)
    return checked


def export_checked(cfg: dict[str, Any], out_dir: str | Path, checkpoint: Optional[str] = None,
                   role: Optional[str] = None, opset: int = DEFAULT_OPSET, check: bool = True,
                   with_metric: bool = True, atol: float = 1e-4, metric_tol: float = 0.5,
                   loaded: Optional[dict[str, Any]] = None, fmt: str = "onnx",
                   tensorrt: Optional[TensorRTOptions] = None) -> CheckedExport:
    """Export ``cfg``'s model to ``out_dir`` and, with ``check``, gate it (eager vs onnxruntime).

    Args:
        cfg: The resolved config; its Eval section (when present) feeds the metric comparison.
        out_dir: Where ``model.onnx`` and ``inference.yml`` go (the gate writes its report there too).
        checkpoint: Weights (default: ``Global.pretrained_model`` / ``Global.checkpoints``).
        role: Sub-model of a distillation checkpoint (default ``Student``).
        opset: ONNX opset (>= 17).
        check: Run :func:`~ocr_core.export.parity.check_parity` on the exported model (and the
            TensorRT gate on the engine).
        with_metric: Also compare the Eval metric (eager vs ONNX) when the config has Eval data.
        atol: Largest tolerated absolute tensor difference.
        metric_tol: Largest tolerated metric difference, in percentage points.
        loaded: ``checkpoint`` already read with ``load_checkpoint`` (it is not read again).
        fmt: ``onnx``, or ``tensorrt`` / ``both``: also ``out_dir/model.engine`` (:func:`add_tensorrt`).
        tensorrt: Engine build and gate settings.

    Raises:
        ConfigError: an unknown ``fmt``.
        ParityError: a gate failed (nothing is published by callers on failure).
        TensorRTUnavailable: TensorRT was asked for and cannot build here.
    """
    trt = needs_tensorrt(fmt)
    result = export_onnx(cfg, out_dir, checkpoint=checkpoint, role=role, opset=opset, loaded=loaded)
    checked = CheckedExport(result)
    if check:
        checked.parity = check_parity(cfg, result.onnx_path, exported=result.exported, out_dir=out_dir,
                                      atol=atol, metric_tol=metric_tol, with_metric=with_metric)
    if trt:
        add_tensorrt(checked, cfg, out_dir, tensorrt, check=check, with_metric=with_metric, metric_tol=metric_tol)
    return checked


__all__ = ["ENGINE_NAME", "EXPORT_FORMATS", "CheckedExport", "TensorRTOptions", "add_tensorrt", "check_format",
           "export_checked", "needs_tensorrt"]
