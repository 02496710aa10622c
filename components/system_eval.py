"""Component ``system_eval``: exported det + rec end to end (TextSystem): candidate, start model, production.

The start pair (the models the run started from, exported by ``export_start``) and the production
pair are scored on the same Eval split by the same code as the candidate; the gate picks its
champion from them (``components/steps/registry.py``). The HTML report also draws the champion's and the
candidate's detections on the first Eval images side by side.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def system_eval(det: Input[Model], rec: Input[Model], start_det: Input[Model], start_rec: Input[Model],
                data: Input[Dataset], registry_uri: str, model_name: str, metrics: Output[Metrics],
                report: Output[HTML], result: Output[Artifact]):
    """End-to-end P/R/H on the det Eval images for the candidate, start and production pairs."""
    import html
    import shutil

    from components._kfp_io import inline_image, log_metrics, prh_table, read_info, write_json
    from components.steps.common import scratch
    from components.steps.data import DET_LABEL
    from components.steps.models import detection_pairs, fetch_onnx, system_eval_uris
    from components.steps.registry import production_pointer, start_pair
    from ocr_core.storage.manifest import sync_down

    data_uri_ = read_info(data)["uri"]
    cand = {"det": read_info(det)["uri"], "rec": read_info(rec)["uri"]}
    results = {"candidate": system_eval_uris(cand["det"], cand["rec"], data_uri_), "start": None, "production": None}
    start = start_pair(cand, {"det": read_info(start_det)["uri"], "rec": read_info(start_rec)["uri"]})
    if start:
        results["start"] = system_eval_uris(start[0]["det"], start[0]["rec"], data_uri_)
    pointer = production_pointer(registry_uri, model_name)
    champion_det = start[0]["det"] if start else ""
    if pointer:
        parts = pointer["parts"]
        results["production"] = system_eval_uris(parts["det"]["uri"], parts["rec"]["uri"], data_uri_)
        champion_det = parts["det"]["uri"]
    for label, values in results.items():
        log_metrics(metrics, values or {}, f"{label}_")
    table = prh_table(results, ("precision", "recall", "hmean"))
    pictures = ""
    if champion_det and champion_det != cand["det"]:  # champion vs candidate detections, first 3 Eval images
        work = scratch("system-eval-vis")
        sync_down(data_uri_, work / "data", quiet=True)
        pairs = detection_pairs(fetch_onnx(champion_det, work / "a"), fetch_onnx(cand["det"], work / "b"),
                                work / "data" / DET_LABEL.format(split="test"), work / "data")
        shutil.rmtree(work, ignore_errors=True)
        who = "production" if pointer else "start"
        pictures = f"<h3>Detections: champion ({who}) | candidate</h3>" + "".join(
            f'<p>{html.escape(p["image"])}<br><img src="{inline_image(p["a"])}" alt="champion"> '
            f'<img src="{inline_image(p["b"])}" alt="candidate"></p>' for p in pairs)
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(f"<!DOCTYPE html><html><head><meta charset=utf-8><title>End-to-end (det+rec)</title>"
                 f"<style>img{{max-width:49%}}</style></head><body><h2>End-to-end (det+rec)</h2>"
                 f"<pre>{html.escape(table)}</pre>{pictures}</body></html>\n")
    write_json(result, {"results": results, "production_version": (pointer or {}).get("version"),
                        "candidate_parts": cand, "start_parts": start[1] if start else None,
                        "start_uris": start[0] if start else None})
    print(table)
