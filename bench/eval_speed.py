"""Evaluation speed: ``ocrflow eval``'s loop (torch) vs the exported model on onnxruntime, same images.

Usage (repo root)::

    .venv/bin/python bench/eval_speed.py --num 8 --size 1280x720 --repeats 3

Both sides run the official PP-OCRv3 det student (imported from the ``rapidocr-onnxruntime``
wheel, cached under ``~/.cache/ocrflow/wheels``) on the same rendered scene images:

- **ours**: the loop :func:`ocr_core.engine.run.evaluate_config` runs, with the shipped
  ``ch_PP-OCRv3_det_student.yml`` Eval section (DetResizeForTest 736 min side, batch 1): read and
  resize every image, forward, DB post-process, metric. Model building and checkpoint loading
  are not timed. Two variants: the float32 path without BN folding (what ``ocrflow eval`` did
  before #17) and the defaults.
- **ONNX**: that checkpoint exported by ``ocrflow export`` and run by
  :class:`ocr_core.inference.predictors.DetPredictor` with the eval resize (736 min side, not the
  export's inference default of 960 max side) and the same DB post-process,
  per image: ``cv2.imread`` + predict. Session creation is not timed.

Every variant runs once per repeat, interleaved, in one process; medians. By default both sides
use ONE intra-op thread and the loader reads in-process, so the process CPU time is the work
done, which other load on a shared machine barely changes (wall time is printed too, noisy).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core.config import load_config, resolve_config  # noqa: E402
from ocr_core.data.icdar import convert_det_gt_dir  # noqa: E402
from ocr_core.data.synth import synth_det  # noqa: E402
from ocr_core.engine.loop import evaluate  # noqa: E402
from ocr_core.engine.run import _build_loaders, prepare  # noqa: E402
from ocr_core.export.onnx_export import export_onnx  # noqa: E402
from ocr_core.inference.predictors import DetPredictor  # noqa: E402
from ocr_core.weights.checkpoint import load_checkpoint, load_weights  # noqa: E402
from ocr_core.weights.ppocr_weights import fetch_rapidocr_wheel, import_ppocrv3  # noqa: E402

CONFIG = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"


def prepare_data(work: Path, num: int, size: tuple[int, int]) -> tuple[Path, Path, Path]:
    """Rendered images + label file, the imported checkpoint, its ONNX export directory."""
    synth_det(str(work / "eval"), num=num, seed=17, domain="sign", size=size)
    label = work / "eval" / "label.txt"
    convert_det_gt_dir(str(work / "eval" / "gt"), str(work / "eval" / "images"), str(label), image_prefix="images")
    ckpt = import_ppocrv3("det", work / "det.pt", wheel=fetch_rapidocr_wheel()).checkpoint
    cfg = resolve_config(load_config(CONFIG, [f"Global.checkpoints={ckpt}", "Global.use_gpu=false",
                                              "Global.pretrained_model=null"]))
    export_onnx(cfg, work / "onnx", str(ckpt))
    return label, Path(ckpt), work / "onnx"


def ours(work: Path, label: Path, ckpt: Path, extra: list[str], **eval_kw) -> tuple[float, float, dict]:
    """``(CPU seconds, wall seconds, metrics)`` of the evaluation loop ``ocrflow eval`` runs
    (the model built and the checkpoint loaded as :func:`evaluate_config` does, not timed)."""
    cfg = load_config(CONFIG, [f"Global.checkpoints={ckpt}", "Global.use_gpu=false", "Global.pretrained_model=null",
                               f"Global.save_model_dir={work / 'out'}", f"Eval.dataset.data_dir={work / 'eval'}",
                               f"Eval.dataset.label_file_list=[{label}]", *extra])
    run = prepare(cfg, "eval")
    _build_loaders(run, with_train=False)
    load_weights(run.model, load_checkpoint(str(ckpt))["model"], strict=True)
    c0, w0 = time.process_time(), time.perf_counter()
    metrics = evaluate(run.model, run.eval_loader, run.post_process, run.metric, device=run.dist.device,
                       amp=run.g.use_amp, amp_dtype=run.amp_dtype, channels_last=run.g.channels_last,
                       show_progress=False, **eval_kw)
    return time.process_time() - c0, time.perf_counter() - w0, metrics


def onnx_run(predictor: DetPredictor, images: list[Path]) -> tuple[float, float, int]:
    c0, w0 = time.process_time(), time.perf_counter()
    boxes = sum(len(predictor(cv2.imread(str(p)))["points"]) for p in images)
    return time.process_time() - c0, time.perf_counter() - w0, boxes


VARIANTS = {  # label -> (config overrides, evaluate() keywords)
    "ours, fp32, BN unfolded (before #17)": (["Global.use_amp=false", "Global.channels_last=false"],
                                            {"fuse_bn": False}),
    "ours, default (fast path + folded BN)": ([], {}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=8)
    ap.add_argument("--size", default="1280x720", help="rendered image WxH")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads on both sides (default 1: CPU time is then a fair, load-robust measure)")
    ap.add_argument("--workers", type=int, default=0,
                    help="Eval.loader.num_workers (default 0, so the process CPU time includes reading)")
    args = ap.parse_args(argv)
    logging.getLogger("ocrflow").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    extra = [f"Eval.loader.num_workers={args.workers}"]
    cpu: dict[str, list[float]] = {k: [] for k in [*VARIANTS, "onnx"]}
    wall: dict[str, list[float]] = {k: [] for k in cpu}
    hmean: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        label, ckpt, onnx_dir = prepare_data(work, args.num, (w, h))
        images = sorted((work / "eval" / "images").glob("*.jpg"))
        # the eval resize, not the export's inference default (960 max side): same input sizes
        predictor = DetPredictor(onnx_dir, intra_op_num_threads=args.threads, limit_side_len=736, limit_type="min")
        onnx_run(predictor, images[:1])  # warm-up
        boxes = 0
        for _ in range(args.repeats):
            for name, (overrides, kw) in VARIANTS.items():
                c, t, metrics = ours(work, label, ckpt, extra + overrides, **kw)
                cpu[name].append(c)
                wall[name].append(t)
                hmean[name] = metrics["hmean"]
            c, t, boxes = onnx_run(predictor, images)
            cpu["onnx"].append(c)
            wall["onnx"].append(t)
    n = len(images)
    print(f"{n} images {w}x{h} (rendered scenes), PP-OCRv3 det student, DetResizeForTest 736 min side "
          f"(736x1312), {args.threads} intra-op thread(s), {args.workers} loader workers; median of "
          f"{args.repeats} interleaved repeats; torch {torch.__version__}, onnxruntime {ort_version()}")
    print("| path | CPU ms/img | wall ms/img | hmean | ONNX CPU time / this |")
    print("|---|---|---|---|---|")
    onnx_cpu = statistics.median(cpu["onnx"]) / n
    for name in [*VARIANTS, "onnx"]:
        c, t = statistics.median(cpu[name]) / n, statistics.median(wall[name]) / n
        label_ = "ONNX `DetPredictor` (imread + predict)" if name == "onnx" else name
        hm = f"{hmean[name]:.4f}" if name in hmean else f"({boxes} boxes)"
        print(f"| {label_} | {1000 * c:.0f} | {1000 * t:.0f} | {hm} | {onnx_cpu / c:.2f} |")
    return 0


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    raise SystemExit(main())
