"""Component ``export``: ONNX export behind the parity gate (eager vs. onnxruntime)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export(model_type: str, model: Input[Model], data: Input[Dataset], overrides: list, atol: float,
           onnx_model: Output[Model], parity: Output[Metrics]):
    """Fails (ParityError) when outputs or the Eval metric drift; else publishes ``<model>-onnx``."""
    from components._kfp_io import log_metrics, read_info, write_info
    from components.steps.models import export_model

    src = read_info(model)
    info = write_info(onnx_model, export_model(model_type, src["uri"], read_info(data)["uri"],
                                               src["uri"].rstrip("/") + "-onnx", overrides, atol=atol))
    p = info["extra"]["parity"]
    log_metrics(parity, {"max_abs_diff": p["max_abs"], "passed": float(p["passed"])}, "parity_")
    log_metrics(parity, p.get("eager") or {}, "eager_")
    log_metrics(parity, p.get("onnx") or {}, "onnx_")
    print(f"exported {info['uri']}: parity {p}")
