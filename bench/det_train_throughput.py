"""Detection training throughput on CPU: det_mv3_db, 640x640 crops, batch 4; ours vs PaddleOCR.

Measures images/s of the real training step (forward + DB loss + backward + Adam) for fp32,
channels_last, bf16 autocast and both (the row ``ocrflow train`` takes by default on this
machine is marked), and the data pipeline separately (IaaAugment -> EastRandomCropData ->
border/shrink maps -> normalise).

The peer is measured in the same run, not quoted: with ``--paddleocr-src`` (a PaddleOCR
release/2.10 source checkout) and ``--paddle-python`` (an interpreter with paddlepaddle, e.g.
``paddlepaddle==3.0.0`` in a venv outside this repo), ``bench/paddle_det_step.py`` runs
PaddleOCR's own model/loss/optimizer builders from its ``det_mv3_db.yml`` on the very same
batches (saved to an .npz), in a subprocess with the same thread count. Ours and theirs are
interleaved ``--repeats`` times; each figure is the median over repeats of the median step.
Without both options only ours is printed, and it says so.

    python bench/det_train_throughput.py [--steps 4] [--warmup 1] [--batch 4] [--size 640] \
        [--repeats 3] [--paddleocr-src DIR --paddle-python PY]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_timing import load_batches, median_step_seconds  # noqa: E402
from ocr_core.build import build_loss, create_model  # noqa: E402
from ocr_core.config import load_config  # noqa: E402
from ocr_core.config.schema import GlobalConfig  # noqa: E402
from ocr_core.data.icdar import convert_det_gt_dir  # noqa: E402
from ocr_core.data.synth import synth_det  # noqa: E402
from ocr_core.engine.fast_path import resolve_fast_path  # noqa: E402


def make_data(root: Path, num: int) -> Path:
    synth_det(str(root), num=num, seed=0, domain="mixed", size=(1280, 720))
    convert_det_gt_dir(str(root / "gt"), str(root / "images"), str(root / "label.txt"), image_prefix="images")
    return root


def step_throughput(cfg: dict, batches: list, steps: int, warmup: int, channels_last: bool,
                    bf16: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(cfg).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [[b[0].contiguous(memory_format=torch.channels_last), *b[1:]] for b in batches]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    med = median_step_seconds(lambda batch: model(batch[0]), build_loss(cfg), opt, batches, steps,
                              warmup, bf16)
    return batches[0][0].shape[0] / med, med


VARIANTS = (("fp32", False, False), ("fp32 channels_last", True, False),
            ("bf16 autocast", False, True), ("bf16 autocast + channels_last", True, True))


def paddle_step_seconds(args: argparse.Namespace, npz: Path) -> tuple[float, dict]:
    """Median step seconds of PaddleOCR's trainer step on the saved batches (a subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "CPU_NUM": "1"}
    cmd = [args.paddle_python, str(ROOT / "bench" / "paddle_det_step.py"), "--paddleocr-src", str(args.paddleocr_src),
           "--batches", str(npz), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"PaddleOCR step failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line)
    return statistics.median(out["step_s"]), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paddleocr-src", type=Path, default=None, help="PaddleOCR release/2.10 source tree")
    ap.add_argument("--paddle-python", default=None, help="python with paddlepaddle installed")
    args = ap.parse_args()
    peer = args.paddleocr_src is not None and args.paddle_python is not None
    if (args.paddleocr_src is None) != (args.paddle_python is None):
        ap.error("--paddleocr-src and --paddle-python go together")
    fast = resolve_fast_path(GlobalConfig(), torch.device("cpu"))
    default_name = {(False, False): "fp32", (True, False): "fp32 channels_last", (False, True): "bf16 autocast",
                    (True, True): "bf16 autocast + channels_last"}[(fast.channels_last, fast.amp)]
    per: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    theirs: list[float] = []
    info: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "det", num=max(8, args.batch * 2))
        cfg = load_config(ROOT / "configs/det/det_mv3_db.yml", [
            f"Train.dataset.data_dir={data}", f"Train.dataset.label_file_list=[{data / 'label.txt'}]",
            f"Train.dataset.transforms.EastRandomCropData.size=[{args.size}, {args.size}]",
            f"Train.loader.batch_size_per_card={args.batch}", f"Train.loader.num_workers={args.workers}",
        ])
        batches, data_s_per_img = load_batches(cfg)
        npz = Path(tmp) / "batches.npz"
        np.savez(npz, **{f"b{i}_{k}": t.numpy().astype(np.float32) for i, b in enumerate(batches)
                         for k, t in enumerate(b[:5])})
        for r in range(args.repeats):
            for name, cl, bf in VARIANTS:
                per[name].append(step_throughput(cfg, batches, args.steps, args.warmup, cl, bf)[1])
            if peer:
                med, info = paddle_step_seconds(args, npz)
                theirs.append(med)
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    threads = torch.get_num_threads()
    bsz = args.batch
    print(f"\ndet_mv3_db train step, {args.size}x{args.size}, batch {bsz}, {threads} CPU threads both sides, "
          f"median of {args.repeats} interleaved repeats x {args.steps} steps (after {args.warmup} warm-up); "
          f"torch {torch.__version__}" + (f", paddlepaddle {info.get('paddle')}" if peer else ""))
    print(f"fast-path choice here: {fast.reason}")
    print(f"data pipeline (1 process): {data_s_per_img * 1000:.0f} ms/img "
          f"= {data_s_per_img * bsz:.2f} s per batch (overlapped by DataLoader workers in training)")
    paddle_ips = bsz / statistics.median(theirs) if theirs else None
    print("| variant | img/s | s/step |" + (" vs PaddleOCR (same run) |" if peer else ""))
    print("|---|---|---|" + ("---|" if peer else ""))
    for name, _, _ in VARIANTS:
        med = statistics.median(per[name])
        mark = " **(default)**" if name == default_name else ""
        row = f"| ours, {name}{mark} | {bsz / med:.2f} | {med:.2f} |"
        print(row + (f" {bsz / med / paddle_ips:.1f}x |" if paddle_ips else ""))
    if paddle_ips:
        print(f"| PaddleOCR 2.10 trainer step (measured) | {paddle_ips:.2f} | {bsz / paddle_ips:.2f} | 1.0x |")
        print(f"\nspread (s/step per repeat): ours default {', '.join(f'{t:.2f}' for t in per[default_name])}; "
              f"PaddleOCR {', '.join(f'{t:.2f}' for t in theirs)} (its last loss {info.get('loss_last', float('nan')):.3f})")
    else:
        print("\nPaddleOCR not measured: pass --paddleocr-src DIR --paddle-python PY to measure it in this run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
