"""Component ``export_start``: the start model (imported / pretrained weights) through the same export.

The gate's champion when nothing is in production is the model the run started from; exporting it
with the candidate's code (``components.steps.models.export_model``: ONNX + parity gate) lets the system eval score
both pairs identically. Content-keyed: a re-run reuses the export. No start model -> an empty
artifact (``uri`` "") and the system eval has no start pair for that part.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export_start(model_type: str, start_uri: str, data: Input[Dataset], overrides: list, atol: float,
                 store_root: str, onnx_model: Output[Model], parity: Output[Metrics]):
    """Export ``start_uri`` (``det_pretrained_uri`` / ``rec_pretrained_uri``) to ONNX behind the parity gate."""
    from components._kfp_io import log_metrics, read_info, write_info, write_json
    from components.steps.models import export_start_model

    m = export_start_model(model_type, start_uri, read_info(data)["uri"], store_root, overrides, atol=atol)
    if m is None:
        write_json(onnx_model, {"uri": "", "digest": "", "kind": "none", "counts": {}, "extra": {}})
        onnx_model.metadata.update({"uri": "", "kind": "none"})
        print(f"no start {model_type} model (trained from scratch)")
        return
    info = write_info(onnx_model, m)
    p = info["extra"]["parity"]
    log_metrics(parity, {"max_abs_diff": p["max_abs"], "passed": float(p["passed"])}, "parity_")
    log_metrics(parity, p.get("eager") or {}, "eager_")
    print(f"start {model_type} {start_uri} -> {info['uri']}: parity {p}")
