"""Component ``system_eval``: exported det + rec end to end (TextSystem) vs. production."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def system_eval(det: Input[Model], rec: Input[Model], data: Input[Dataset], registry_uri: str,
                model_name: str, metrics: Output[Metrics], report: Output[HTML], result: Output[Artifact]):
    """End-to-end P/R/H on the det Eval images for the candidate pair and the production pair."""
    from components import _steps
    from components._kfp_io import log_metrics, prh_table, read_info, write_json
    from components._system_eval import system_eval_uris

    data_uri = read_info(data)["uri"]
    results = {"candidate": system_eval_uris(read_info(det)["uri"], read_info(rec)["uri"], data_uri),
               "production": None}
    pointer = _steps.production_pointer(registry_uri, model_name)
    if pointer:
        parts = pointer["parts"]
        results["production"] = system_eval_uris(parts["det"]["uri"], parts["rec"]["uri"], data_uri)
    for label, values in results.items():
        log_metrics(metrics, values or {}, f"{label}_")
    table = prh_table(results, ("precision", "recall", "hmean"))
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(f"<html><body><h2>End-to-end (det+rec)</h2><pre>{table}</pre></body></html>\n")
    write_json(result, {"results": results, "production_version": (pointer or {}).get("version")})
    print(table)
