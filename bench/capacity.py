"""Capacity model: from measured per-image costs to GPU-hours, nodes, storage and shards per epoch.

    python bench/capacity.py [--measure] [--gpus-per-node 8] [--epoch-hours 24] [--sizes 1000 100000 10000000]

Inputs (printed with their source): the det data pipeline's CPU cost per image and a GPU's training
rate, both measured in the H200 GPU-suite run (docs/benchmarks.md; the constants live in
``components/launcher/resources.py``, which also sizes the pods); the bytes per image and, with
``--measure``, this machine's own single-core data cost (det_mv3_db Train pipeline on synthetic
1280x720 pages; SVTR_LCNet rec pipeline on word crops), median of 3 passes.

Per dataset size the table gives: GPU-hours per epoch (the slower of the GPU and the loader cores
the default pod gets), nodes for the epoch budget, storage, 256 MB shards, the per-node shard cache,
and the first thing that breaks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.launcher.resources import (  # noqa: E402
    DET_DATA_MS_PER_IMAGE,
    STUDENT_GPU_IMG_S,
    per_gpu_defaults,
)

SHARD_MB = 256
IC15_BYTES_PER_IMAGE = 120_000  # ICDAR2015 train JPEGs, 1280x720: 1000 files, ~120 MB (measured on the split)


def measure_data_ms(kind: str, n: int = 24) -> tuple[float, float]:
    """Median single-process ms per image of ``kind``'s Train pipeline and the mean encoded bytes."""
    import numpy as np
    import torch

    from ocr_core.config import load_charset, load_config, wire_rec_heads
    from ocr_core.data.icdar import convert_det_gt_dir
    from ocr_core.data.loader import build_dataloader
    from ocr_core.data.synth import synth_det, synth_rec

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if kind == "det":
            synth_det(str(root), num=8, seed=0, domain="mixed", size=(1280, 720), overwrite=True)
            convert_det_gt_dir(str(root / "gt"), str(root / "images"), str(root / "label.txt"), image_prefix="images")
            cfg = load_config(ROOT / "configs/det/det_mv3_db.yml")
            label = root / "label.txt"
            files = list((root / "images").iterdir())
        else:
            synth_rec(str(root), num=32, seed=0, domain="mixed", overwrite=True)
            cfg = load_config(ROOT / "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml")
            label = root / "rec_gt.txt"
            files = list((root / "images").iterdir())
        cfg["Train"]["dataset"]["data_dir"] = str(root)
        cfg["Train"]["dataset"]["label_file_list"] = [str(label)]
        cfg["Train"]["loader"]["num_workers"] = 0  # the dataset is read in this process
        if kind == "rec":
            cfg = wire_rec_heads(cfg, len(load_charset(cfg) or []) + 1)
        dataset, _, _ = build_dataloader(cfg, "Train")
        passes = []
        for p in range(3):
            np.random.seed(p)
            t0 = time.perf_counter()
            for i in range(n):
                dataset[i % len(dataset)]
            passes.append((time.perf_counter() - t0) * 1000 / n)
        size = statistics.mean(f.stat().st_size for f in files)
    return statistics.median(passes), size


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if b < 1000:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} EB"


def table(sizes: list[int], gpus_per_node: int, epoch_hours: float, data_ms: float, gpu_img_s: float,
          bytes_per_image: float) -> list[dict[str, str]]:
    cores, _ = per_gpu_defaults("det")
    loader_img_s = (cores - 1) * 1000.0 / data_ms  # one core of the pod runs the trainer
    per_gpu = min(gpu_img_s, loader_img_s)
    bound = "data" if loader_img_s < gpu_img_s else "GPU"
    rows = []
    for n in sizes:
        gpu_h = n / per_gpu / 3600
        gpus_needed = math.ceil(gpu_h / epoch_hours)
        nodes = max(1, math.ceil(gpus_needed / gpus_per_node))
        storage = n * bytes_per_image
        shards = max(1, math.ceil(storage / (SHARD_MB * 1e6)))
        node_bytes_s = per_gpu * gpus_per_node * bytes_per_image
        cache = min(storage / nodes, 4 * SHARD_MB * 1e6 * gpus_per_node)  # 4 shards in flight per GPU
        if n < 50_000:
            breaks = "nothing: one GPU for minutes; staging the whole set in is fine"
        else:
            breaks = (f"loader CPU: {bound}-bound at {per_gpu:.0f} img/s/GPU (the GPU takes {gpu_img_s:.0f}); "
                      f"a full node reads {fmt_bytes(node_bytes_s)}/s; stream shards, no stage-in")
        rows.append({"images": f"{n:,}", "GPU-h/epoch": f"{gpu_h:.2f}",
                     f"wall h/epoch, 1 node x {gpus_per_node}": f"{gpu_h / gpus_per_node:.2f}",
                     f"nodes for a {epoch_hours:g} h epoch": str(nodes), "storage": fmt_bytes(storage),
                     f"{SHARD_MB} MB shards": f"{shards:,}", "cache/node": fmt_bytes(cache), "breaks first": breaks})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true", help="also measure this machine's per-image data cost")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--epoch-hours", type=float, default=24.0)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 10_000_000])
    p.add_argument("--bytes-per-image", type=float, default=IC15_BYTES_PER_IMAGE)
    args = p.parse_args()
    print("inputs:")
    print(f"  det data cost      {DET_DATA_MS_PER_IMAGE:.1f} ms/img/core  (H200 suite: 245.5 img/s on 16 cores)")
    print(f"  GPU training rate  {STUDENT_GPU_IMG_S:.0f} img/s  (H200, PP-OCRv3 student, bf16 + channels_last)")
    cores, mib = per_gpu_defaults("det")
    print(f"  default pod        {cores} cores + {mib} MiB per GPU (components/launcher/resources.py)")
    print(f"  bytes per image    {fmt_bytes(args.bytes_per_image)}")
    if args.measure:
        for kind in ("det", "rec"):
            ms, size = measure_data_ms(kind)
            print(f"  this machine, {kind} data cost {ms:.1f} ms/img/core (single process, median of 3), "
                  f"synthetic image {fmt_bytes(size)}")
    rows = table(args.sizes, args.gpus_per_node, args.epoch_hours, DET_DATA_MS_PER_IMAGE, STUDENT_GPU_IMG_S,
                 args.bytes_per_image)
    cols = list(rows[0])
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
