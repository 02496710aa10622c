"""The export gate: eager PyTorch vs onnxruntime, on tensors and on the Eval metric.

(a) Tensor parity: seeded inputs of several shapes through the eager export-mode model and the
ONNX graph; the max abs difference must be <= ``atol`` (1e-4).
(b) Metric parity (when the config has an Eval set and a checkpoint): the eager metric (the
engine's evaluation of the weights in memory) and the metric through the ONNX *predictor* path (raw images ->
metadata-driven pre-processing -> onnxruntime -> post-processing) must agree within
``metric_tol`` points (hmean / acc in percent).

On failure the differing tensors are written to ``out_dir/parity_failure.npz`` and a
:class:`ParityError` is raised. The TensorRT gate (:mod:`ocr_core.export.tensorrt_parity`) applies
the same two checks to a TensorRT engine against onnxruntime.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ocr_core.errors import OCRFlowError
from ocr_core.export.onnx_export import ExportedModel, checkpoint_from_config, load_export_model, plain_config
from ocr_core.inference import metadata as md

log = logging.getLogger("ocrflow")
DET_SHAPES = ((1, 3, 64, 96), (2, 3, 128, 128), (1, 3, 96, 160))
REC_WIDTHS = (64, 160, 320)
RESIZE_OPS = ("DetResizeForTest", "RecResizeImg")


class ParityError(OCRFlowError):
    """The exported model does not reproduce the eager model."""


@dataclass
class ParityReport:
    """Outcome of :func:`check_parity`."""

    tensor: list[dict[str, Any]] = field(default_factory=list)  # {"shape", "max_abs"}
    atol: float = 1e-4
    metric_name: Optional[str] = None
    eager_metric: Optional[dict[str, float]] = None
    onnx_metric: Optional[dict[str, float]] = None
    metric_tol: float = 0.5
    metric_skipped: Optional[str] = None
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((t["max_abs"] for t in self.tensor), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_abs": self.max_abs}


def default_shapes(model_type: str, rec_shape: Optional[list[int]] = None) -> list[tuple[int, ...]]:
    if model_type == "rec":
        c, h, _ = rec_shape or md.DEFAULT_REC_SHAPE
        return [(1 + i % 2, c, h, w) for i, w in enumerate(REC_WIDTHS)]
    return list(DET_SHAPES)


def tensor_parity(model: torch.nn.Module, session: Any, shapes: list[tuple[int, ...]], seed: int = 0
                  ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Max abs difference per shape, and the arrays (input, eager, onnx) per shape."""
    input_name = session.get_inputs()[0].name
    rows, arrays = [], {}
    gen = torch.Generator().manual_seed(seed)
    for shape in shapes:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            ref = model(x)
        ref_np = ref.detach().float().numpy()
        out = session.run(None, {input_name: x.numpy()})[0]
        diff = float(np.abs(out - ref_np).max()) if out.shape == ref_np.shape else float("inf")
        rows.append({"shape": list(shape), "max_abs": diff})
        tag = "x".join(map(str, shape))
        arrays.update({f"{tag}_input": x.numpy(), f"{tag}_eager": ref_np, f"{tag}_onnx": out})
    return rows, arrays


def _raw_eval_dataset(cfg: dict[str, Any]) -> Any:
    """The Eval dataset with every op from the resize onwards replaced by KeepKeys (raw images)."""
    from ocr_core.data import DATASETS

    ds_cfg = copy.deepcopy(cfg["Eval"]["dataset"])
    ops = []
    for op in ds_cfg.get("transforms") or []:
        name = next(iter(op)) if isinstance(op, dict) else str(op)
        if name in RESIZE_OPS or name in ("NormalizeImage", "ToCHWImage", "KeepKeys"):
            break
        ops.append(op)
    names = [next(iter(op)) for op in ops if isinstance(op, dict)]
    if "DetLabelEncode" in names:
        keep = ["image", "polys", "ignore_tags"]
    else:
        keep = ["image", "label_ctc" if "MultiLabelEncode" in names else "label"]
    ops.append({"KeepKeys": {"keep_keys": keep}})
    ds_cfg["transforms"] = ops
    cls = DATASETS.get(ds_cfg.pop("name"), "Eval.dataset.name")
    return cls(**ds_cfg, mode="eval", global_cfg=cfg.get("Global") or {})


def onnx_metric(cfg: dict[str, Any], onnx_path: str | Path, limit: Optional[int] = None,
                session: Optional[Any] = None) -> dict[str, float]:
    """Evaluate the ONNX model through the predictor path on ``cfg``'s Eval set.

    ``session``: run this instead of onnxruntime (anything with ``InferenceSession.run``'s surface, e.g.
    a TensorRT engine); the pre/post-processing still comes from ``onnx_path``'s metadata.
    """
    from ocr_core.build import build_metric
    from ocr_core.inference.predictors import DetPredictor, RecPredictor

    metric = build_metric(cfg)
    meta = md.read_metadata(onnx_path)
    mtype = md.validate_metadata(meta, str(onnx_path))
    dataset = _raw_eval_dataset(cfg)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if mtype == "det":
        # the eager side resizes as the config's Eval does, whatever deploy resize the export embedded
        # and, like tools/eval.py, without predict_det's box filter: both sides score the same boxes
        det = DetPredictor(onnx_path, filter_boxes=False, **md.eval_det_resize(cfg))
        det.session = session or det.session
        for i in range(n):
            sample = dataset[i]
            if sample is None:  # unreadable: excluded, as the eager evaluation excludes it
                continue
            img, polys, ignore = sample[:3]
            res = det(img)
            metric([res], [None, None, [np.asarray(polys)], [np.asarray(ignore)]])
    else:
        rec = RecPredictor(onnx_path, dynamic_width=False, batch_size=32)
        rec.session = session or rec.session
        chars = ["blank", *meta[md.PREFIX + "character"]]
        samples = [s for s in (dataset[i] for i in range(n)) if s is not None]
        for start in range(0, len(samples), 32):
            chunk = samples[start:start + 32]
            preds = rec([s[0] for s in chunk])
            labels = []
            for s in chunk:
                ids = s[1]
                text = ids if isinstance(ids, str) else "".join(chars[int(k)] for k in np.asarray(ids) if int(k) != 0)
                labels.append((text, 1.0))
            metric((preds, labels))
    return metric.get_metric()


def eager_config(cfg: dict[str, Any], exported: ExportedModel, save_dir: str | Path) -> dict[str, Any]:
    """The plain config the eager side evaluates with: float32 on one CPU process, no checkpoint (the
    weights are the exported model's own, already in memory)."""
    plain = plain_config(cfg, exported.role)
    plain["Architecture"] = copy.deepcopy(exported.arch)
    g = plain.setdefault("Global", {})
    g["checkpoints"] = None
    g["pretrained_model"] = None
    g["save_model_dir"] = str(save_dir)
    g["use_gpu"] = False
    g["distributed"] = False
    # the exported graph is float32: compare it with a float32 evaluation, whatever precision the
    # model was trained in (bf16 autocast alone moves IC15 rec accuracy by ~1.5 points)
    g["use_amp"] = False
    plain["Eval"].setdefault("loader", {})["num_workers"] = 0
    return plain


def eager_metric(cfg: dict[str, Any], exported: ExportedModel) -> dict[str, float]:
    """The Eval metric of the exported (single, plain) model, evaluated as ``evaluate_config`` does but
    on the weights in memory: no checkpoint is written or read again."""
    from ocr_core.data.loader import build_dataloader
    from ocr_core.engine.distributed import cleanup
    from ocr_core.engine.loop import evaluate
    from ocr_core.engine.run import prepare
    from ocr_core.observability.logging import close_log_files

    with tempfile.TemporaryDirectory() as tmp:
        run = prepare(eager_config(cfg, exported, tmp), "eval")
        try:
            run.model.load_state_dict(exported.model.state_dict())  # the same architecture: strict
            _, loader, _ = build_dataloader(run.cfg, "Eval", distributed=run.dist.enabled, seed=run.g.seed)
            return evaluate(run.model, loader, run.post_process, run.metric, device=run.dist.device,
                            model_type=run.model_type, amp=False, channels_last=bool(run.g.channels_last),
                            show_progress=run.dist.is_main)
        finally:
            close_log_files()  # its eval.log goes with tmp
            cleanup()


def compare_metric(report: Any, name: str, ref_label: str, ref: dict[str, float], label: str,
                   got: dict[str, float]) -> None:
    """Append a failure to ``report.failures`` when ``got[name]`` and ``ref[name]`` differ by more than
    ``report.metric_tol`` points (metrics in [0, 1], compared in percent)."""
    a, b = float(ref.get(name, 0.0)), float(got.get(name, 0.0))
    if abs(a - b) * 100 > report.metric_tol:
        report.failures.append(f"metric parity: {ref_label} {name} {a:.4f} vs {label} {b:.4f} "
                               f"(differ by {abs(a - b) * 100:.2f} > {report.metric_tol} points)")


def tensor_failures(rows: list[dict[str, Any]], atol: float) -> Optional[str]:
    """The tensor-parity failure line for the shapes whose max abs difference exceeds ``atol``."""
    bad = [t for t in rows if not t["max_abs"] <= atol]
    if not bad:
        return None
    return "tensor parity: " + "; ".join(
        f"{'x'.join(map(str, t['shape']))} max abs {t['max_abs']:.3g} > {atol:g}" for t in bad)


def fail_if_needed(report: Any, arrays: dict[str, np.ndarray], where: Path, what: str, npz_name: str,
                   raise_on_failure: bool) -> None:
    """On failures: write ``arrays`` to ``where/npz_name`` and (``raise_on_failure``) raise ParityError."""
    report.passed = not report.failures
    if report.passed:
        return
    where.mkdir(parents=True, exist_ok=True)
    np.savez(where / npz_name, allow_pickle=False, **arrays)  # numeric tensors, as np.load reads by default
    if raise_on_failure:
        raise ParityError(f"{what} failed: " + " | ".join(report.failures)
                          + f" (tensors written to {where / npz_name})")


def check_parity(
    cfg: dict[str, Any],
    onnx_path: str | Path,
    exported: Optional[ExportedModel] = None,
    out_dir: Optional[str | Path] = None,
    shapes: Optional[list[tuple[int, ...]]] = None,
    atol: float = 1e-4,
    metric_tol: float = 0.5,
    with_metric: bool = True,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Run the gate; see the module docstring.

    Args:
        cfg: The resolved config the model was exported from.
        onnx_path: The exported model.
        exported: The eager model (default: rebuilt from ``cfg`` and its checkpoint, role from
            the metadata).
        out_dir: Where a failure writes ``parity_failure.npz`` (default: beside the model).
        shapes: Input shapes for (a) (default: det 1x3x64x96, 2x3x128x128, 1x3x96x160; rec
            H x {64, 160, 320}).
        atol: Max abs difference allowed in (a).
        metric_tol: Max metric difference in points for (b).
        with_metric: Run (b) when possible.
        raise_on_failure: Raise :class:`ParityError` instead of returning a failed report.
    """
    from ocr_core.inference.predictors import make_session

    onnx_path = md.resolve_model_path(onnx_path)
    meta = md.read_metadata(onnx_path)
    mtype = md.validate_metadata(meta, str(onnx_path))
    if exported is None:
        exported = load_export_model(cfg, checkpoint_from_config(cfg), meta.get(md.PREFIX + "role"))
    exported.model.eval()
    exported.model.export_mode = True
    report = ParityReport(atol=atol, metric_tol=metric_tol)
    session = make_session(onnx_path, ["CPUExecutionProvider"])
    shapes = shapes or default_shapes(mtype, meta[md.PREFIX + "resize"].get("image_shape"))
    report.tensor, arrays = tensor_parity(exported.model, session, shapes)
    if line := tensor_failures(report.tensor, atol):
        report.failures.append(line)
    if not with_metric:
        report.metric_skipped = "disabled"
    elif not cfg.get("Eval") or not cfg.get("Metric"):
        report.metric_skipped = "no Eval/Metric section"
    elif not exported.checkpoint:
        report.metric_skipped = "no checkpoint (random weights)"
    else:
        plain = plain_config(cfg, exported.role)
        report.eager_metric = eager_metric(cfg, exported)
        report.onnx_metric = onnx_metric(plain, onnx_path)
        name = getattr(_metric_main(plain), "main_indicator", None) or ("hmean" if mtype == "det" else "acc")
        report.metric_name = name
        compare_metric(report, name, "eager", report.eager_metric, "onnx", report.onnx_metric)
    log.info("parity: max abs %.3g over %s; metric %s eager %s onnx %s", report.max_abs,
             [t["shape"] for t in report.tensor], report.metric_name, report.eager_metric, report.onnx_metric)
    fail_if_needed(report, arrays, Path(out_dir) if out_dir is not None else onnx_path.parent,
                   "export parity check", "parity_failure.npz", raise_on_failure)
    return report


def _metric_main(cfg: dict[str, Any]) -> Any:
    from ocr_core.build import build_metric

    return build_metric(cfg)


__all__ = ["ParityError", "ParityReport", "check_parity", "compare_metric", "default_shapes", "eager_config",
           "eager_metric", "fail_if_needed", "onnx_metric", "tensor_failures", "tensor_parity"]
