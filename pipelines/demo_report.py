"""The demo's printed summary and ``report.html``: the gate sentence, the metric rows, the step table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def step_rows(timer: Any, which: str) -> list[tuple[str, str, float | None]]:
    """(display name, status, seconds) per step of one pass (``train`` or ``retrain``) of the demo."""
    from pipelines.local_run import display_names
    from pipelines.ocr_train_pipeline import ocr_train_pipeline
    from pipelines.retrain_pipeline import ocr_retrain_pipeline

    names = display_names(ocr_train_pipeline if which == "train" else ocr_retrain_pipeline)
    rows = []
    for task, v in timer.steps.items():
        label = names.get(task, task)
        if v["status"] == "SKIPPED":
            label = {"det-cml": "det recipe cml (teacher, student, extracts)", "challenger-wins": "publish",
                     "new-data": "ocr-train-pipeline + record trained data"}.get(label, label)
        rows.append((label, v["status"], v["seconds"]))
    return rows


# ----------------------------------------------------------------------------------- printing
def _f(v: Any, signed: bool = False) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return str(v)


def _n(v: Any) -> str:
    return "-" if v is None else str(int(v))


def gate_sentence(res: dict[str, Any]) -> str:
    g = res.get("gate") or {}
    if not g:
        return "the gate did not run"
    verdict = "PUBLISHED" if g.get("publish") else "NOT published"
    if g.get("champion") == "start" and g.get("publish"):
        return (f"{verdict} because of the gain: no production model yet, so the champion is the start model "
                f"(off-the-shelf PP-OCRv3 det+rec, end-to-end hmean {_f(g.get('champion_hmean'))}); the fine-tuned "
                f"pair scores {_f(g.get('candidate_hmean'))} (margin {_f(g.get('margin'), True)} >= required "
                f"{g.get('required_margin', 0):g})")
    return f"{verdict}: {g.get('reason', '')}"


def metric_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    g = res.get("gate") or {}
    second = ("skipped: same dataset digest as production, nothing trained or published"
              if res.get("retrain_is_new") is False and res.get("pointer_unchanged") else
              f"NOT skipped (is_new={res.get('retrain_is_new')}, pointer unchanged={res.get('pointer_unchanged')})")
    return [
        ("eval split (receipts)", f"{_n(res.get('eval_images'))} images, {_n(res.get('eval_boxes'))} boxes"),
        ("det hmean, off-the-shelf PP-OCRv3", _f(res.get("det_off_the_shelf"))),
        ("det hmean, fine-tuned (det_recipe=finetune)", _f(res.get("det_finetuned"))),
        ("rec acc, off-the-shelf PP-OCRv3", _f(res.get("rec_off_the_shelf"))),
        ("rec acc, trained", _f(res.get("rec_finetuned"))),
        ("end-to-end hmean, start pair (champion)", _f(res.get("e2e_start"))),
        ("end-to-end hmean, candidate pair", _f(res.get("e2e_candidate"))),
        ("gate: champion / margin", f"{g.get('champion', '-')} / {_f(g.get('margin'), True)}"),
        ("gate: decision", "publish" if g.get("publish") else "keep (nothing published)"),
        ("published version", _f(res.get("published_version"))),
        ("ONNX parity det / rec max|diff|", f"{_f(res['parity'].get('det'))} / {_f(res['parity'].get('rec'))}"),
        ("pass 2 (retrain DAG, same raw data)", second),
    ]


def write_html(path: Path, res: dict[str, Any]) -> Path:
    """``report.html``: gate decision, metrics, before/after detections, curves, steps, links."""
    from ocr_core.observability.report import write_report

    g = res.get("gate") or {}
    gate_rows = [{"": "candidate (fine-tuned det + trained rec)", "end-to-end hmean": _f(g.get("candidate_hmean"))},
                 {"": f"champion ({g.get('champion', '-')})", "end-to-end hmean": _f(g.get("champion_hmean"))},
                 {"": "margin (candidate - champion)", "end-to-end hmean": _f(g.get("margin"), True)},
                 {"": "required margin (gate_margin)", "end-to-end hmean": f"{g.get('required_margin', 0):g}"},
                 {"": "decision", "end-to-end hmean": "publish" if g.get("publish") else "keep (nothing published)"}]
    pairs = []
    for p in res.get("pairs") or []:
        a, b = p["a_counts"], p["b_counts"]
        pairs.append(((f"{p['image']} - off-the-shelf: {a['matched']}/{a['gt']} boxes found, {a['false_pos']} false",
                       p["a"]),
                      (f"{p['image']} - fine-tuned: {b['matched']}/{b['gt']} boxes found, {b['false_pos']} false",
                       p["b"])))
    steps = [{"pass": "1 train", "step": n, "status": s, "seconds": sec} for n, s, sec in res["steps"]["train"]]
    steps += [{"pass": "2 retrain (same data)", "step": n, "status": s, "seconds": sec}
              for n, s, sec in res["steps"]["retrain"]]
    sections = [
        {"title": "What happened", "text": (
            "The official PP-OCRv3 detector is weak on receipts. The training DAG fine-tuned it "
            f"(det_recipe=finetune) from det hmean {_f(res.get('det_off_the_shelf'))} to "
            f"{_f(res.get('det_finetuned'))} on {_n(res.get('eval_boxes'))} held-out boxes. Gate: "
            + gate_sentence(res) + ". Pass 2 ran the retrain DAG on the same raw data: "
            + metric_rows(res)[-1][1] + f". Wall time {res['wall_s']:.0f} s; "
            + ", ".join(f"{k} pass: {v}" for k, v in res["status"].items()) + ".")},
        {"title": "Gate decision", "text": g.get("reason", "the gate did not run"), "table": gate_rows},
        {"title": "Metrics", "table": [{"metric": k, "value": v} for k, v in metric_rows(res)]},
        {"title": "Detections on the same 3 eval images: off-the-shelf (left) | fine-tuned (right)",
         "text": "green = found (IoU >= 0.5 with a ground-truth box), red = false detection, blue = missed, "
                 "grey = don't care", "pairs": pairs},
        {"title": "Training curves", "images": [(f"{k}: loss and eval", v) for k, v in res["curves"].items()]},
        {"title": "Steps (kfp.local; seconds of wall time)", "table": steps},
        {"title": "Each step's own report", "links": res.get("links") or []},
    ]
    return write_report(path, "OCRFlow demo: fine-tuning PP-OCRv3 on receipts", sections)


__all__ = ["gate_sentence", "metric_rows", "step_rows", "write_html"]
