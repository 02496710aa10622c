"""``make demo``: the training DAG doing its job on this machine, on synthetic receipts, in minutes.

The official PP-OCRv3 detector is weak on the synthetic ``receipt`` domain (docs/ppocrv3_recipe.md).
The demo renders receipt scenes, imports the official PP-OCRv3 det/rec weights (cached under
``<out>/weights``), runs the training DAG with ``kfp.local`` (``det_recipe=finetune`` from those
weights; short training), and then the retrain DAG on the same raw data, which must skip. The gate
publishes only when the fine-tuned pair beats the start pair end to end; the report says why.
``<out>/report.html`` is self-contained (inline PNGs).

``make demo`` runs ``python -m pipelines.demo``; the same is the ``ocrflow demo`` verb (an
``ocrflow.verbs`` entry point in ``pyproject.toml``). kfp is imported when the demo runs, so
``ocrflow demo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.demo_report import gate_sentence, metric_rows, step_rows, write_html

HELP = "Run the training DAG locally on synthetic receipts (fine-tune PP-OCRv3), then the retrain DAG; write a report."
OUT = Path("demo_out")
REC_CONFIG = "pipelines/configs/ch_PP-OCRv3_rec_ctc_lmdb.yml"


@dataclass(frozen=True)
class DemoSize:
    """Data and training sizes of one demo run."""

    det_train: int = 24
    det_test: int = 8  # receipt scenes: ~30 boxes each, >= 150 on the Eval split
    rec_train: int = 32
    rec_test: int = 16
    image: int = 320
    det_steps: int = 30
    det_crop: int = 256
    det_batch: int = 4
    rec_steps: int = 2
    rec_batch: int = 8


DEMO = DemoSize()
CI = DemoSize(det_train=8, det_test=3, rec_train=8, rec_test=4, image=256, det_steps=12, det_crop=192, det_batch=2,
              rec_steps=1, rec_batch=4)


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _import_weights(out: Path) -> dict[str, str]:
    """Imported PP-OCRv3 checkpoints as ``<out>/<kind>/model.pt`` (kept for the next run; a kind that
    fails to import is left out and that model trains from scratch)."""
    from ocr_core.weights.checkpoint import load_checkpoint
    from ocr_core.weights.ppocr_weights import import_ppocrv3

    got = {}
    for kind in ("det", "rec"):
        ckpt = out / kind / "model.pt"
        try:
            load_checkpoint(ckpt)
            got[kind] = str(ckpt)
            _say(f"official PP-OCRv3 {kind}: cached {ckpt}")
            continue
        except Exception:  # noqa: BLE001 - absent or damaged: import again
            pass
        try:
            rep = import_ppocrv3(kind, ckpt)
            got[kind] = str(rep.checkpoint)
            _say(f"imported official PP-OCRv3 {kind}: {rep.layers_matched} layers, parity {rep.parity_max_diff:.1e}")
        except Exception as exc:  # noqa: BLE001 - the demo still runs from scratch without weights
            _say(f"PP-OCRv3 {kind} weights unavailable ({exc}); that model trains from scratch")
    return got


def _rec_init_fits(ckpt: str, config: str) -> bool:
    """The imported rec weights load into the pipeline's rec config (same parameter names/shapes)."""
    from ocr_core.build import create_model
    from ocr_core.config import load_config, wire_rec_heads
    from ocr_core.weights.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)["model"]
    cfg = wire_rec_heads(load_config(config), int(state[[k for k in state if k.endswith("weight")][-1]].shape[0]))
    ours = create_model(cfg).state_dict()
    return set(ours) == set(state) and all(ours[k].shape == state[k].shape for k in ours)


def pipeline_params(raw_uri: str, init: dict[str, str], size: DemoSize) -> dict[str, Any]:
    """The training DAG's arguments: ``finetune`` from the imported weights, short training."""
    step = ["Global.print_batch_step=5", "Train.loader.num_workers=0", "Eval.loader.num_workers=0"]
    det_eval = [f"Eval.dataset.transforms.DetResizeForTest={{limit_side_len: {size.image}, limit_type: max}}"]
    return {
        "raw_data_uri": raw_uri, "store_root": "s3://ocrflow", "epochs": 0, "workers": 1,
        "det_recipe": "finetune",
        "det_pretrained_uri": init.get("det", ""), "rec_pretrained_uri": init.get("rec", ""),
        "rec_config": REC_CONFIG,
        # a short, hot fine-tune: the config's lr 1e-3 (PaddleOCR's, for 64 images) at the demo's own batch
        "det_overrides": [*step, *det_eval, f"Global.max_steps={size.det_steps}",
                          f"Global.eval_batch_step=[0, {max(1, size.det_steps // 3)}]",  # 3 points on the curve
                          f"Train.dataset.transforms.EastRandomCropData.size=[{size.det_crop}, {size.det_crop}]",
                          f"Train.loader.batch_size_per_card={size.det_batch}", "Optimizer.lr.warmup_epoch=0",
                          f"Optimizer.lr.reference_batch_size={size.det_batch}"],
        # rec keeps the guide's schedule (warm-up 5 epochs): a few steps move it little
        "rec_overrides": [*step, f"Global.max_steps={size.rec_steps}", "Global.eval_batch_step=[0, 100000]",
                          f"Train.loader.batch_size_per_card={size.rec_batch}"],
        "det_eval_overrides": det_eval, "rec_eval_overrides": [],
    }


# ------------------------------------------------------------------------------ reading results
class Run:
    """One kfp.local pipeline run's outputs under the pipeline root, looked up by display name."""

    def __init__(self, root: Path, pipeline: Any) -> None:
        from pipelines.local_run import display_names

        runs = sorted(root.glob(f"{pipeline.name}-*"), key=os.path.getmtime) if root.is_dir() else []
        self.dir = runs[-1] if runs else None
        self.names = display_names(pipeline)
        self.tasks = {v: k for k, v in self.names.items()}

    def executor_output(self, display: str) -> dict[str, Any]:
        if self.dir is None or display not in self.tasks:
            return {}
        f = self.dir / self.tasks[display] / "executor_output.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    def artifact(self, display: str, name: str) -> dict[str, Any]:
        """The JSON content of an output artifact file ({} when the task did not run)."""
        if self.dir is None or display not in self.tasks:
            return {}
        f = self.dir / self.tasks[display] / name
        return json.loads(f.read_text()) if f.is_file() else {}

    def metadata(self, display: str, name: str) -> dict[str, Any]:
        arts = (self.executor_output(display).get("artifacts") or {}).get(name, {}).get("artifacts") or [{}]
        return dict(arts[0].get("metadata") or {})

    def output(self, display: str) -> Any:
        return (self.executor_output(display).get("parameterValues") or {}).get("Output")


def _download(uri: str, dest: Path, names: tuple[str, ...]) -> list[Path]:
    from ocr_core.storage.client import open_store
    from ocr_core.storage.uri import join_uri

    store, got = open_store(uri), []
    for n in names:
        try:
            store.get_file(join_uri(uri, n), dest / n)
            got.append(dest / n)
        except Exception:  # noqa: BLE001 - a file a run did not write
            pass
    return got


def collect(out: Path, run: Run, retrain: Run, pointer_before_retrain: Any, pointer_after: Any,
            size: int = 320) -> dict[str, Any]:
    """Everything the tables and the report show; call while the object store is up."""
    from components.steps.data import DET_LABEL
    from components.steps.models import detection_pairs, fetch_onnx
    from ocr_core.storage.manifest import sync_down

    det = run.artifact("eval det", "result").get("results", {})
    rec = run.artifact("eval rec", "result").get("results", {})
    system = run.artifact("system eval (det+rec)", "result")
    gate = run.metadata("gate", "decision")
    res: dict[str, Any] = {
        "det_off_the_shelf": (det.get("off_the_shelf") or {}).get("hmean"),
        "det_finetuned": (det.get("candidate") or {}).get("hmean"),
        "rec_off_the_shelf": (rec.get("off_the_shelf") or {}).get("acc"),
        "rec_finetuned": (rec.get("candidate") or {}).get("acc"),
        "e2e_start": ((system.get("results") or {}).get("start") or {}).get("hmean"),
        "e2e_candidate": ((system.get("results") or {}).get("candidate") or {}).get("hmean"),
        "eval_images": ((system.get("results") or {}).get("candidate") or {}).get("images"),
        "eval_boxes": ((system.get("results") or {}).get("candidate") or {}).get("gt_boxes"),
        "gate": gate, "published_version": run.output("publish"),
        "parity": {k: ((run.artifact(t, "onnx_model").get("extra") or {}).get("parity") or {}).get("max_abs")
                   for k, t in (("det", "export det"), ("rec", "export rec"))},
        "retrain_is_new": retrain.output("check new data"),
        "pointer_unchanged": pointer_before_retrain == pointer_after and pointer_after is not None,
        "production_version": (pointer_after or {}).get("version"),
        "pairs": [], "curves": {}, "links": [],
    }
    work = out / "work" / "report"
    shutil.rmtree(work, ignore_errors=True)
    start_det = run.artifact("export start det", "onnx_model").get("uri")
    cand_det = run.artifact("export det", "onnx_model").get("uri")
    data = run.artifact("convert labels", "dataset").get("uri")
    if start_det and cand_det and data:
        sync_down(data, work / "data", quiet=True)
        res["pairs"] = detection_pairs(fetch_onnx(start_det, work / "start"), fetch_onnx(cand_det, work / "cand"),
                                       work / "data" / DET_LABEL.format(split="test"), work / "data", n=3,
                                       scale=560 / size)
    steps = out / "steps"
    for display, step in (("fine-tune det", "det_finetune"), ("train rec", "rec_train")):
        uri = run.artifact(display, "model").get("uri")
        if not uri:
            continue
        got = _download(uri, steps / step, ("report.html", "curves.png", "training_summary.json"))
        if steps / step / "curves.png" in got:
            res["curves"][display] = steps / step / "curves.png"
        if steps / step / "report.html" in got:
            res["links"].append((f"{display}: training report ({uri})", f"steps/{step}/report.html"))
    if run.dir is not None:
        for display, name, fname in (("system eval (det+rec)", "report", "system_eval.html"),
                                     ("eval det", "report", "eval_det.md"), ("eval rec", "report", "eval_rec.md"),
                                     ("gate", "report", "gate.md")):
            f = run.dir / run.tasks.get(display, "?") / name
            if f.is_file():
                steps.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, steps / fname)
                res["links"].append((f"{display}: KFP {name} artifact", f"steps/{fname}"))
        res["gate_markdown"] = (steps / "gate.md").read_text() if (steps / "gate.md").is_file() else ""
    shutil.rmtree(work, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------------- the demo
def run_demo(out: Path, size: DemoSize = DEMO, keep_store: bool = False) -> dict[str, Any]:
    """Both passes (train, then retrain on the same data); returns the results (see :func:`collect`)."""
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    for d in ("kfp_root", "steps", "work", "raw") + (() if keep_store else ("s3",)):
        shutil.rmtree(out / d, ignore_errors=True)
    os.environ.setdefault("OCRFLOW_WORK_DIR", str(out / "work"))
    from components.steps.registry import POINTER, production_pointer
    from ocr_core.storage.client import open_store
    from ocr_core.storage.embedded import EmbeddedS3
    from ocr_core.storage.manifest import sync_up
    from pipelines.local_run import StepTimer, run_pipeline_locally
    from pipelines.ocr_train_pipeline import ocr_train_pipeline
    from pipelines.retrain_pipeline import ocr_retrain_pipeline, run_retrain_local
    from pipelines.sample_data import make_raw_dataset

    _say(f"rendering synthetic receipts (ICDAR layout): det {size.det_train} train / {size.det_test} eval images "
         f"{size.image}x{size.image}, rec {size.rec_train} / {size.rec_test} words")
    raw = make_raw_dataset(out / "raw", det_train=size.det_train, det_test=size.det_test, rec_train=size.rec_train,
                           rec_test=size.rec_test, seed=1, size=(size.image, size.image), domain="receipt")
    weights = _import_weights(out / "weights")
    if "rec" in weights and not _rec_init_fits(weights["rec"], REC_CONFIG):
        _say("imported rec weights do not fit the pipeline rec config; rec trains from scratch")
        weights.pop("rec")
    timers = {"train": StepTimer(), "retrain": StepTimer()}
    status = {"train": "not run", "retrain": "not run"}
    with EmbeddedS3(out / "s3") as s3:
        os.environ.update(s3.env)
        _say(f"embedded S3 at {s3.endpoint} (per-session credentials, env only)")
        if keep_store:  # reused runs, but a fresh registry: the story starts with no production model
            open_store("s3://ocrflow").delete("s3://ocrflow/models/ppocrv3/" + POINTER)
        raw_m = sync_up(raw, "s3://ocrflow/incoming/demo", kind="raw-dataset", quiet=True)
        init = {k: sync_up(Path(v).parent, f"s3://ocrflow/weights/ppocrv3-{k}", kind="model", quiet=True,
                           extra={"checkpoint": "model.pt"}).prefix for k, v in weights.items()}
        params = pipeline_params(raw_m.prefix, init, size)
        for name, runner in (("train", run_pipeline_locally), ("retrain", run_retrain_local)):
            _say(f"pass {'1: the training DAG' if name == 'train' else '2: the retrain DAG on the same data'} "
                 "(kfp.local; each task streams its log below)")
            before = production_pointer("s3://ocrflow", "ppocrv3")
            try:
                runner(params, out / "kfp_root", s3.env, timer=timers[name])
                status[name] = "SUCCESS"
            except RuntimeError as exc:
                status[name] = f"FAILED: {exc}"
                break
        after = production_pointer("s3://ocrflow", "ppocrv3")
        res = collect(out, Run(out / "kfp_root", ocr_train_pipeline), Run(out / "kfp_root", ocr_retrain_pipeline),
                      before, after, size.image)
    res["status"] = status
    res["steps"] = {k: step_rows(t, k) for k, t in timers.items()}
    res["size"] = size
    res["wall_s"] = time.monotonic() - t0
    return res


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ocrflow demo`` / ``python -m pipelines.demo``."""
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--size", choices=("demo", "ci"), default="demo", help="ci: the CI-sized variant")
    parser.add_argument("--keep-store", action="store_true",
                        help="keep <out>/s3 (finished content-keyed steps are reused; the registry is reset)")


def run(args: argparse.Namespace) -> int:
    """Both passes, the tables on stdout and ``<out>/report.html``; 0 when both pipelines succeeded."""
    out = Path(args.out).resolve()
    res = run_demo(out, DEMO if args.size == "demo" else CI, keep_store=args.keep_store)
    report = write_html(out / "report.html", res)
    print("\n" + "=" * 78)
    print(f"{'pass':<10}{'step':<44}{'status':<10}{'seconds':>10}")
    for which in ("train", "retrain"):
        for name, st, sec in res["steps"][which]:
            print(f"{which:<10}{name[:43]:<44}{st:<10}{'-' if sec is None else f'{sec:.1f}':>10}")
    print("-" * 78)
    for name, val in metric_rows(res):
        print(f"{name:<44}{val}")
    print("-" * 78)
    print("gate: " + gate_sentence(res))
    print("=" * 78)
    ok = all(v == "SUCCESS" for v in res["status"].values())
    print(f"pipelines: {res['status']}; wall time {res['wall_s']:.0f} s; report: {report}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.demo`` (``make demo``)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
