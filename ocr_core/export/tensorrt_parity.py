"""The TensorRT gate: a built engine against onnxruntime, on tensors and on the Eval metric.

The same two checks as the ONNX gate (:mod:`ocr_core.export.parity`), with the exported ONNX model
(onnxruntime, CPU) as the reference the engine must reproduce:

(a) Tensor parity: the gate's seeded input shapes through both; the max abs difference must be
<= ``atol`` (default :data:`TRT_ATOL`: an FP16 engine's probabilities sit ~1e-3 from float32).
(b) Metric parity (when the config has Eval/Metric sections): the Eval metric through the predictor
path (metadata-driven pre/post-processing) with the engine in place of onnxruntime must agree with
the ONNX metric within ``metric_tol`` points.

On failure the tensors go to ``out_dir/tensorrt_parity_failure.npz`` and a
:class:`~ocr_core.export.parity.ParityError` is raised, as for ONNX.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import torch

from ocr_core.errors import OCRFlowError
from ocr_core.export.onnx_export import plain_config
from ocr_core.export.parity import (
    compare_metric,
    default_shapes,
    fail_if_needed,
    onnx_metric,
    tensor_failures,
)
from ocr_core.inference import metadata as md

log = logging.getLogger("ocrflow")
TRT_ATOL = 1e-2
# Where the engine's input/output buffers live. TensorRT needs CUDA memory; the tests run a fake
# ``tensorrt`` module on host memory ("cpu").
BUFFER_DEVICE = "cuda"


@dataclass
class TensorRTParityReport:
    """Outcome of :func:`check_tensorrt_parity`."""

    tensor: list[dict[str, Any]] = field(default_factory=list)  # {"shape", "max_abs"}
    atol: float = TRT_ATOL
    metric_name: Optional[str] = None
    onnx_metric: Optional[dict[str, float]] = None
    tensorrt_metric: Optional[dict[str, float]] = None
    metric_tol: float = 0.5
    metric_skipped: Optional[str] = None
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((t["max_abs"] for t in self.tensor), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_abs": self.max_abs}


class TensorRTSession:
    """A serialized engine behind onnxruntime's ``InferenceSession`` surface (``get_inputs``,
    ``get_outputs``, ``run``), so the gate and the predictors run it unchanged.

    One input; every output is returned, in the engine's order. A batch larger than the engine's
    optimisation profile allows is run in chunks.

    Args:
        engine_path: The ``.engine`` file.
        trt: The ``tensorrt`` module (injectable for tests).
        device: Where the I/O buffers are allocated (default :data:`BUFFER_DEVICE`).
    """

    def __init__(self, engine_path: str | Path, trt: Optional[Any] = None, device: Optional[str] = None) -> None:
        if trt is None:
            import tensorrt as trt_module

            trt = trt_module
        self._trt = trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            Path(engine_path).read_bytes())
        if self.engine is None:
            raise OCRFlowError(f"TensorRT cannot deserialize {engine_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        if len(self.input_names) != 1:
            raise OCRFlowError(f"{engine_path}: expected one input, found {self.input_names}")
        self.device = torch.device(device or BUFFER_DEVICE)
        shapes = self.engine.get_tensor_profile_shape(self.input_names[0], 0)  # min, opt, max
        self.profile = [tuple(int(v) for v in s) for s in shapes]
        self.max_batch = self.profile[2][0]

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name=n) for n in self.input_names]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name=n) for n in self.output_names]

    def _dtype(self, name: str) -> torch.dtype:
        half = getattr(self._trt.DataType, "HALF", None)
        return torch.float16 if self.engine.get_tensor_dtype(name) == half else torch.float32

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        name = self.input_names[0]
        xd = torch.from_numpy(x).to(self.device, self._dtype(name)).contiguous()
        if not self.context.set_input_shape(name, tuple(xd.shape)):
            lo, _, hi = self.profile
            dims = "..".join("x".join(map(str, s)) for s in (lo, hi))
            raise OCRFlowError(f"TensorRT: input {name} {'x'.join(map(str, xd.shape))} is outside the engine's "
                               f"profile {dims} (ocrflow export --max-side widens it)")
        self.context.set_tensor_address(name, xd.data_ptr())
        outs = []
        for out_name in self.output_names:
            out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=self._dtype(out_name),
                              device=self.device)
            self.context.set_tensor_address(out_name, out.data_ptr())
            outs.append(out)
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        if not self.context.execute_async_v3(stream.cuda_stream if stream is not None else 0):
            raise OCRFlowError("TensorRT execution failed (execute_async_v3 returned False)")
        if stream is not None:
            stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]

    def run(self, output_names: Optional[list[str]], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Like ``InferenceSession.run``: the outputs (all of them; ``output_names`` is ignored)."""
        x = np.ascontiguousarray(feeds[self.input_names[0]], dtype=np.float32)
        chunks = [self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return [np.concatenate([c[k] for c in chunks], axis=0) for k in range(len(self.output_names))]


def compare_sessions(ref: Any, test: Any, shapes: list[tuple[int, ...]], seed: int = 0
                     ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Max abs difference per shape between two sessions' first outputs, and the arrays per shape."""
    ref_in, test_in = ref.get_inputs()[0].name, test.get_inputs()[0].name
    rows, arrays = [], {}
    gen = torch.Generator().manual_seed(seed)  # the same inputs as the ONNX gate's
    for shape in shapes:
        x = torch.randn(*shape, generator=gen).numpy()
        a = ref.run(None, {ref_in: x})[0]
        b = test.run(None, {test_in: x})[0]
        diff = float(np.abs(b.astype(np.float32) - a).max()) if a.shape == b.shape else float("inf")
        rows.append({"shape": list(shape), "max_abs": diff})
        tag = "x".join(map(str, shape))
        arrays.update({f"{tag}_input": x, f"{tag}_onnx": a, f"{tag}_tensorrt": b})
    return rows, arrays


def check_tensorrt_parity(
    cfg: dict[str, Any],
    onnx_path: str | Path,
    engine_path: str | Path,
    out_dir: Optional[str | Path] = None,
    shapes: Optional[list[tuple[int, ...]]] = None,
    atol: float = TRT_ATOL,
    metric_tol: float = 0.5,
    with_metric: bool = True,
    onnx_reference: Optional[dict[str, float]] = None,
    skip_metric: Optional[str] = None,
    raise_on_failure: bool = True,
    session: Optional[Any] = None,
) -> TensorRTParityReport:
    """Run the TensorRT gate; see the module docstring.

    Args:
        cfg: The resolved config the model was exported from (its Eval set feeds (b)).
        onnx_path: The exported ONNX model (the reference; its metadata drives the predictors).
        engine_path: The engine built from it.
        out_dir: Where a failure writes ``tensorrt_parity_failure.npz`` (default: beside the engine).
        shapes: Input shapes for (a) (default: the ONNX gate's).
        atol: Max abs difference allowed in (a).
        metric_tol: Max metric difference in points for (b).
        with_metric: Run (b) when the config has Eval/Metric sections.
        onnx_reference: The ONNX metric already measured by the ONNX gate (else measured here).
        skip_metric: Skip (b) for this reason (e.g. the ONNX gate's: random weights).
        raise_on_failure: Raise ``ParityError`` instead of returning a failed report.
        session: The engine session (default: :class:`TensorRTSession` on ``engine_path``).
    """
    from ocr_core.inference.predictors import make_session

    onnx_path = md.resolve_model_path(onnx_path)
    meta = md.read_metadata(onnx_path)
    mtype = md.validate_metadata(meta, str(onnx_path))
    engine = session or TensorRTSession(engine_path)
    report = TensorRTParityReport(atol=atol, metric_tol=metric_tol)
    shapes = shapes or default_shapes(mtype, meta[md.PREFIX + "resize"].get("image_shape"))
    report.tensor, arrays = compare_sessions(make_session(onnx_path, ["CPUExecutionProvider"]), engine, shapes)
    if line := tensor_failures(report.tensor, atol):
        report.failures.append(line)
    if not with_metric:
        report.metric_skipped = "disabled"
    elif skip_metric:
        report.metric_skipped = skip_metric
    elif not cfg.get("Eval") or not cfg.get("Metric"):
        report.metric_skipped = "no Eval/Metric section"
    else:
        from ocr_core.build import build_metric

        plain = plain_config(cfg, meta.get(md.PREFIX + "role"))
        report.onnx_metric = onnx_reference or onnx_metric(plain, onnx_path)
        report.tensorrt_metric = onnx_metric(plain, onnx_path, session=engine)
        name = getattr(build_metric(plain), "main_indicator", None) or ("hmean" if mtype == "det" else "acc")
        report.metric_name = name
        compare_metric(report, name, "onnx", report.onnx_metric, "tensorrt", report.tensorrt_metric)
    log.info("tensorrt parity: max abs %.3g over %s; metric %s onnx %s tensorrt %s", report.max_abs,
             [t["shape"] for t in report.tensor], report.metric_name, report.onnx_metric, report.tensorrt_metric)
    fail_if_needed(report, arrays, Path(out_dir) if out_dir is not None else Path(engine_path).parent,
                   "TensorRT parity check", "tensorrt_parity_failure.npz", raise_on_failure)
    return report


__all__ = ["BUFFER_DEVICE", "TRT_ATOL", "TensorRTParityReport", "TensorRTSession", "check_tensorrt_parity",
           "compare_sessions"]
