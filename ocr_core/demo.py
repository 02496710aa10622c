"""``make demo``: the whole training DAG on this machine, on synthetic data, in minutes.

synth raw data -> embedded S3 -> import the official PP-OCRv3 det/rec weights (the students'
starting point) -> ``kfp.local`` pipeline run (short training) -> a summary table and an HTML
report under ``./demo_out/``. kfp is imported lazily (``ocr_core`` never imports it at import time).
"""

from __future__ import annotations

import argparse
import glob
import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path("demo_out")
TINY_TEACHER = ["Backbone={name: MobileNetV3, scale: 0.35, model_name: small, disable_se: true}",
                "Neck={name: DBFPN, out_channels: 16}", "Head={name: DBHead, k: 50}"]


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _import_weights(out: Path) -> dict[str, str]:
    """Imported PP-OCRv3 checkpoints as ``<out>/<kind>/model.pt`` (skipping a kind that fails)."""
    from ocr_core.export.ppocr_weights import import_ppocrv3

    got = {}
    for kind in ("det", "rec"):
        try:
            rep = import_ppocrv3(kind, out / kind / "model.pt")
            got[kind] = str(rep.checkpoint)
            _say(f"imported official PP-OCRv3 {kind}: {rep.layers_matched} layers, parity {rep.parity_max_diff}")
        except Exception as exc:  # noqa: BLE001 - the demo still runs from scratch without weights
            _say(f"PP-OCRv3 {kind} weights unavailable ({exc}); that model trains from scratch")
    return got


def _rec_init_fits(ckpt: str, config: str) -> bool:
    """The imported rec weights load into the pipeline's rec config (same parameter names/shapes)."""
    from ocr_core.config import load_config
    from ocr_core.engine.checkpoint import load_checkpoint
    from ocr_core.engine.program import wire_rec_heads
    from ocr_core.modeling import build_model

    state = load_checkpoint(ckpt)["model"]
    cfg = load_config(config)
    wire_rec_heads(cfg, int(state[[k for k in state if k.endswith("weight")][-1]].shape[0]))
    ours = build_model(cfg["Architecture"]).state_dict()
    return set(ours) == set(state) and all(ours[k].shape == state[k].shape for k in ours)


def _artifact(root: Path, task: str, name: str) -> dict[str, Any]:
    hits = sorted(glob.glob(str(root / "**" / task / name), recursive=True), key=os.path.getmtime)
    return json.loads(Path(hits[-1]).read_text()) if hits else {}


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def summarize(root: Path, steps: dict[str, dict[str, Any]], names: dict[str, str]) -> tuple[list, list]:
    """(step rows, metric rows) from the timer and the artifacts under the pipeline root."""
    step_rows = [(names.get(k, k), v["status"], v["seconds"]) for k, v in steps.items()]
    det = _artifact(root, "evaluate-2", "result").get("results", {})
    rec = _artifact(root, "evaluate", "result").get("results", {})
    system = _artifact(root, "system-eval", "result").get("results", {})
    parity = {k: (_artifact(root, t, "onnx_model").get("extra") or {}).get("parity", {})
              for k, t in (("det", "export-2"), ("rec", "export"))}
    rows = [("det hmean, off-the-shelf PP-OCRv3", (det.get("off_the_shelf") or {}).get("hmean")),
            ("det hmean, fine-tuned (CML student)", (det.get("candidate") or {}).get("hmean")),
            ("rec acc, off-the-shelf PP-OCRv3", (rec.get("off_the_shelf") or {}).get("acc")),
            ("rec acc, fine-tuned", (rec.get("candidate") or {}).get("acc")),
            ("end-to-end hmean (det+rec ONNX)", (system.get("candidate") or {}).get("hmean")),
            ("ONNX parity det max|diff|", parity["det"].get("max_abs")),
            ("ONNX parity rec max|diff|", parity["rec"].get("max_abs"))]
    return step_rows, rows


def write_report(path: Path, step_rows: list, metric_rows: list, wall: float) -> Path:
    def table(head: tuple[str, ...], rows: list) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table border=1 cellpadding=4><tr>{th}</tr>{trs}</table>"

    path.write_text("<!doctype html><html><head><meta charset=utf-8><title>OCRFlow demo</title></head><body>"
                    f"<h1>OCRFlow demo</h1><p>wall time {wall:.0f} s</p><h2>Steps</h2>"
                    + table(("step", "status", "seconds"), step_rows) + "<h2>Metrics</h2>"
                    + table(("metric", "value"), metric_rows) + "</body></html>\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ocr_core.demo", description=__doc__)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--det-steps", type=int, default=8, help="Global.max_steps per det training step")
    p.add_argument("--rec-steps", type=int, default=8)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OCRFLOW_WORK_DIR", str(out / "work"))
    from ocr_core.storage.embedded import EmbeddedS3
    from ocr_core.storage.manifest import sync_up
    from pipelines.local_run import StepTimer, display_names, run_local
    from pipelines.sample_data import make_raw_dataset

    _say("rendering synthetic labelled data (ICDAR layout)")
    raw = make_raw_dataset(out / "raw", det_train=8, det_test=4, rec_train=48, rec_test=16, seed=1)
    weights = _import_weights(out / "weights")
    rec_config = "pipelines/configs/ch_PP-OCRv3_rec_ctc_lmdb.yml"
    if "rec" in weights and not _rec_init_fits(weights["rec"], rec_config):
        _say("imported rec weights do not fit the pipeline rec config; rec trains from scratch")
        weights.pop("rec")
    step = ["Global.print_batch_step=2", "Global.eval_batch_step=[0, 100000]", "Train.loader.num_workers=0",
            "Eval.loader.num_workers=0"]
    det_eval = ["Eval.dataset.transforms.DetResizeForTest={limit_side_len: 640, limit_type: max}"]
    with EmbeddedS3(out / "s3") as s3:
        os.environ.update(s3.env)
        _say(f"embedded S3 at {s3.endpoint} (per-session credentials, env only)")
        raw_m = sync_up(raw, "s3://ocrflow/incoming/demo", kind="raw-dataset", quiet=True)
        init = {k: sync_up(Path(v).parent, f"s3://ocrflow/weights/ppocrv3-{k}", kind="model", quiet=True,
                           extra={"checkpoint": "model.pt"}).prefix for k, v in weights.items()}
        params = {
            "raw_data_uri": raw_m.prefix, "store_root": "s3://ocrflow", "epochs": 1, "workers": 1,
            "det_pretrained_uri": init.get("det", ""), "rec_pretrained_uri": init.get("rec", ""),
            "rec_config": rec_config,
            "det_overrides": [*step, *det_eval, f"Global.max_steps={args.det_steps}",
                              "Train.dataset.transforms.EastRandomCropData.size=[320, 320]",
                              "Train.loader.batch_size_per_card=4", "Optimizer.lr.warmup_epoch=0",
                              "Optimizer.lr.learning_rate=0.0002"],
            "teacher_overrides": [f"Architecture.Models.{r}.{o}" for r in ("Student", "Student2") for o in TINY_TEACHER],
            "student_overrides": [f"Architecture.Models.Teacher.{o}" for o in TINY_TEACHER],
            "rec_overrides": [*step, f"Global.max_steps={args.rec_steps}", "Train.loader.batch_size_per_card=16",
                              "Optimizer.lr.learning_rate=0.0001"],
            "det_eval_overrides": det_eval, "rec_eval_overrides": [],
        }
        _say("running the pipeline with kfp.local (each task streams its log below)")
        timer = StepTimer()
        status = "SUCCESS"
        try:
            run_local(params, out / "kfp_root", s3.env, timer=timer)
        except RuntimeError as exc:
            status = f"FAILED: {exc}"
    wall = time.monotonic() - t0
    step_rows, metric_rows = summarize(out / "kfp_root", timer.steps, display_names())
    report = write_report(out / "report.html", step_rows, metric_rows, wall)
    print("\n" + "=" * 72)
    print(f"{'step':<34}{'status':<12}{'seconds':>10}")
    for name, st, sec in step_rows:
        print(f"{name:<34}{st:<12}{'-' if sec is None else f'{sec:.1f}':>10}")
    print("-" * 72)
    for name, val in metric_rows:
        print(f"{name:<44}{_fmt(val):>14}")
    print("=" * 72)
    print(f"pipeline: {status}; wall time {wall:.0f} s; report: {report}")
    return 0 if status == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())
