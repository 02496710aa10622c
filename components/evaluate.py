"""Component ``evaluate``: the candidate vs. off-the-shelf and production models on one Eval set."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate(model_type: str, model: Input[Model], data: Input[Dataset], overrides: list, baseline_uri: str,
             registry_uri: str, model_name: str, metrics: Output[Metrics], report: Output[Markdown],
             result: Output[Artifact]):
    """Metrics per model (``candidate_hmean``, ``off_the_shelf_hmean``, ``production_hmean`` ...)."""
    from components._kfp_io import log_metrics, prh_table, read_info, write_json
    from components.steps.models import evaluate_models
    from components.steps.registry import production_pointer

    pointer = production_pointer(registry_uri, model_name) or {}
    models = {"candidate": read_info(model)["uri"], "off_the_shelf": baseline_uri,
              "production": (pointer.get("parts") or {}).get(model_type, {}).get("uri", "")}
    results = evaluate_models(model_type, read_info(data)["uri"], models, overrides)
    for label, values in results.items():
        log_metrics(metrics, values, f"{label}_")
    keys = ("precision", "recall", "hmean") if model_type == "det" else ("acc", "norm_edit_dis")
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(f"## {model_type} evaluation\n\n" + prh_table(results, keys))
    write_json(result, {"model_type": model_type, "results": results, "production": pointer.get("version")})
    print(prh_table(results, keys))
