"""Component ``export``: ONNX export behind the parity gate (eager vs. onnxruntime); with ``format``
``tensorrt``/``both`` also a TensorRT engine behind its own gate (engine vs. onnxruntime).

A TensorRT format runs on :data:`TENSORRT_IMAGE` with one GPU (the pipeline sets both on that task
only); anywhere else it fails in one line before exporting anything.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE

# images/README.md: DEFAULT_IMAGE built with WITH_TENSORRT=1 (the gpu-trt requirement set)
TENSORRT_IMAGE = f"{DEFAULT_IMAGE}-trt"
GPU_RESOURCE = "nvidia.com/gpu"


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export(model_type: str, model: Input[Model], data: Input[Dataset], overrides: list, atol: float,
           onnx_model: Output[Model], parity: Output[Metrics], format: str = "onnx") -> str:
    """Fails (ParityError) when outputs or the Eval metric drift; else publishes ``<model>-onnx``
    (``model.onnx``, ``model.pt``), or for a TensorRT format ``<model>-onnx-trt`` (also
    ``model.engine``); returns its URI."""
    from components._kfp_io import log_metrics, read_info, write_info
    from components.steps.models import export_model

    src = read_info(model)
    out_uri = src["uri"].rstrip("/") + ("-onnx" if format == "onnx" else "-onnx-trt")
    info = write_info(onnx_model, export_model(model_type, src["uri"], read_info(data)["uri"], out_uri, overrides,
                                               atol=atol, fmt=format))
    p = info["extra"]["parity"]
    log_metrics(parity, {"max_abs_diff": p["max_abs"], "passed": float(p["passed"])}, "parity_")
    log_metrics(parity, p.get("eager") or {}, "eager_")
    log_metrics(parity, p.get("onnx") or {}, "onnx_")
    t = info["extra"].get("tensorrt_parity")
    if t:
        log_metrics(parity, {"parity_max_abs_diff": t["max_abs"], "parity_passed": float(t["passed"])}, "tensorrt_")
        log_metrics(parity, t.get("tensorrt") or {}, "tensorrt_")
    print(f"exported {info['uri']}: parity {p}" + (f"; TensorRT engine, parity {t}" if t else ""))
    return info["uri"]
