"""Capacity model: from measured per-image costs to GPU-hours, CPU-node-hours, nodes, storage and shards.

    python bench/capacity.py [--measure] [--gpus-per-node 8] [--epoch-hours 24] [--sizes 1000 100000 10000000]
                             [--stream-mb-s 39.1] [--markdown]

Every input is a constant below with a comment naming the doc, the bench and the machine it was
measured on; ``main`` prints them as a table (the "inputs" of docs/scaling.md) before the capacity
table, so the page's numbers all come from one run of this script. ``--measure`` also measures this
machine's own single-core data cost (det_mv3_db Train pipeline on synthetic 1280x720 pages;
SVTR_LCNet rec pipeline on word crops), median of 3 passes: that is where the 11.2 and 1.3 ms/img
inputs came from.

Per model (det, rec) and dataset size the table gives: the per-GPU rate (the slower of the GPU and
the loader cores the default pod gets), GPU-hours per epoch, the GPUs/nodes an epoch budget needs,
storage, 256 MB shards, the per-node shard cache and whether the set fits in it, the stage-in time at
the measured shard stream, the object-store read rate a node needs against that measured stream,
the CPU-only alternative (2-core-node-hours per epoch at the measured CPU train step plus data cost,
and 2-core nodes for the budget), and what saturates first (:func:`breaks_first`, from the ratios
of :func:`limits`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.launcher.resources import (  # noqa: E402
    DET_DATA_MS_PER_IMAGE,
    REC_DATA_MS_PER_IMAGE,
    REC_GPU_IMG_S,
    STUDENT_GPU_IMG_S,
    cores_to_feed,
    per_gpu_defaults,
)

SHARD_MB = 256  # shard size `ocrflow build-shards` targets (a parameter of this table, not a measurement)
CACHE_SHARDS_PER_GPU = 4  # shards in flight per GPU the node cache is sized for (a parameter, not a measurement)

# --- measured inputs (docs/benchmarks.md unless said) ------------------------------------------------
# det data cost: 65.2 ms of one core per image = 16 cores / 245.5 img/s, det_mv3_db Train pipeline through a
# 16-worker DataLoader; bench/gpu_suite.py, H200 node with 16 cores, 2026-12-04 (components/launcher/resources.py).
# rec data cost: 1.3 ms/img, SVTR_LCNet Train pipeline in ONE process (no DataLoader); this script's --measure,
# 2-core dev machine, 2026-12-05. The rec pipeline through a DataLoader was NOT measured (det's costs 5.8x its
# one-process 11.2 ms), so the rec loader rate below may be optimistic.
# GPU train steps, bf16 AMP + channels_last: PP-OCRv3 det student 552.0 img/s (batch 32, 640x640), SVTR_LCNet rec
# 3260.4 img/s (batch 256, 48x320); bench/gpu_suite.py, one H200, 2026-12-04.
# CPU train steps on the 2-core dev machine (AMD EPYC, 2 vCPU, avx512_bf16, shared), 2 threads, data excluded:
DET_CPU_IMG_S = statistics.median([3.31, 3.47, 1.44])  # det_mv3_db, bf16 + channels_last (the CPU default),
# batch 4, 640x640; bench/det_train_throughput.py, 3 runs 2026-12-05 06:51/07:02/07:22. The PP-OCRv3 det
# student's CPU step was NOT measured: the CPU columns of the det rows are det_mv3_db's.
REC_CPU_IMG_S = 27.8  # SVTR_LCNet CTC (fine-tune config), fp32 + channels_last (the CPU default for rec), batch 64,
# 48x320; bench/rec_train_throughput.py, one run 2026-12-05 07:21.
CPU_NODE_CORES = 2  # the machine those CPU steps ran on; larger CPU nodes were NOT measured
IC15_BYTES_PER_IMAGE = 120_000  # ICDAR2015 train JPEGs, 1280x720: 1000 files, ~120 MB (measured on the split)
SYNTH_CROP_BYTES = 51.3e6 / 3000  # synth_rec word crop PNG: 3,000 crops = 51.3 MB (bench/shard_throughput.py);
# the size of real rec crops (e.g. IC15's) was NOT measured
# shard streaming: ShardDataSet from S3 (embedded SeaweedFS on 127.0.0.1), cold cache, one process (num_workers 0),
# rec transforms included: 2287 samples/s of those 17.1 KB crops; bench/shard_throughput.py, 2-core dev machine,
# 2026-12-05 (docs/benchmarks.md "Shards"). One reader on loopback: whether parallel readers on a node add up,
# and a real network, were NOT measured.
STREAM_SAMPLES_S = 2287.0
STREAM_BYTES_S = STREAM_SAMPLES_S * SYNTH_CROP_BYTES  # ~39.1 MB/s


@dataclass(frozen=True)
class Model:
    """One model's measured costs (see the comments above for where each was measured)."""

    kind: str  # "det" | "rec": the pod size comes from per_gpu_defaults(kind)
    name: str
    data_ms: float  # ms of one core per training image (data pipeline)
    gpu_img_s: float  # one GPU's training step, img/s
    cpu_img_s: float  # a CPU_NODE_CORES machine's training step, img/s (data excluded)
    bytes_per_image: float


DET = Model("det", "PP-OCRv3 det student (CPU: det_mv3_db)", DET_DATA_MS_PER_IMAGE, STUDENT_GPU_IMG_S,
            DET_CPU_IMG_S, IC15_BYTES_PER_IMAGE)
REC = Model("rec", "SVTR_LCNet rec", REC_DATA_MS_PER_IMAGE, REC_GPU_IMG_S, REC_CPU_IMG_S, SYNTH_CROP_BYTES)

INPUTS = [  # (input, value, where it was measured): printed as docs/scaling.md's inputs table
    ("det data cost (decode, IaaAugment, 640 crop, border/shrink maps) through a 16-worker DataLoader",
     f"245.5 img/s on 16 cores = **{DET_DATA_MS_PER_IMAGE:.1f} ms/img/core**",
     "H200 node, 16 cores, `bench/gpu_suite.py` (2026-12-04)"),
    ("det transforms in one process, no DataLoader (not used by the table)", "11.2 ms/img",
     "2-core dev machine, `bench/capacity.py --measure` (2026-12-05, shared)"),
    ("rec (SVTR_LCNet) Train pipeline in one process", f"**{REC_DATA_MS_PER_IMAGE:.1f} ms/img/core**",
     "same; through a DataLoader: **not measured**"),
    ("PP-OCRv3 det student GPU step, bf16 + channels_last, batch 32", f"**{STUDENT_GPU_IMG_S:.1f} img/s** per GPU",
     "H200, `bench/gpu_suite.py` (2026-12-04)"),
    ("SVTR_LCNet rec GPU step, bf16 + channels_last, batch 256", f"**{REC_GPU_IMG_S:.1f} img/s** per GPU", "same"),
    ("det_mv3_db CPU step, bf16 + channels_last (CPU default), batch 4, 2 threads",
     f"3.31 / 3.47 / 1.44 img/s in 3 runs, median **{DET_CPU_IMG_S:.2f} img/s**",
     "2-core dev machine, `bench/det_train_throughput.py` (2026-12-05); the student's CPU step: **not measured**"),
    ("SVTR_LCNet CTC CPU step, fp32 + channels_last (CPU default), batch 64, 2 threads",
     f"**{REC_CPU_IMG_S:.1f} img/s**", "2-core dev machine, `bench/rec_train_throughput.py` (2026-12-05, one run)"),
    ("ICDAR2015 train image (1280x720 JPEG)", f"{IC15_BYTES_PER_IMAGE / 1000:.0f} KB", "the IC15 split (1000 files)"),
    ("rec word crop (synthetic PNG)", f"{SYNTH_CROP_BYTES / 1000:.1f} KB",
     "`bench/shard_throughput.py` set (3000 crops, 51.3 MB); real crops: **not measured**"),
    ("shard stream, S3 loopback, cold cache, one process (rec transforms included)",
     f"{STREAM_SAMPLES_S:.0f} samples/s x {SYNTH_CROP_BYTES / 1000:.1f} KB = **{STREAM_BYTES_S / 1e6:.1f} MB/s**",
     "2-core dev machine, `bench/shard_throughput.py` (2026-12-05); parallel readers, real network: **not measured**"),
]


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if b < 1000:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1000
    return f"{b:.1f} EB"


def fmt_s(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def gpu_rate(m: Model) -> tuple[float, str]:
    """(img/s one GPU trains at with the default pod's loader cores, what bounds it: "data" or "GPU")."""
    cores, _ = per_gpu_defaults(m.kind)
    loader_img_s = (cores - 1) * 1000.0 / m.data_ms  # one core of the pod runs the trainer
    return min(m.gpu_img_s, loader_img_s), ("data" if loader_img_s < m.gpu_img_s else "GPU")


def plan(n: int, m: Model, gpus_per_node: int, epoch_hours: float, stream_bytes_s: float) -> dict:
    """The numbers of one row: ``n`` images of model ``m`` in an epoch of at most ``epoch_hours``."""
    per_gpu, bound = gpu_rate(m)
    gpu_h = n / per_gpu / 3600
    gpus = max(1, math.ceil(gpu_h / epoch_hours))
    nodes = math.ceil(gpus / gpus_per_node)
    gpus_on_node = math.ceil(gpus / nodes)
    storage = n * m.bytes_per_image
    cache_cap = CACHE_SHARDS_PER_GPU * SHARD_MB * 1e6 * gpus_per_node
    cpu_ms = 1000.0 / m.cpu_img_s + m.data_ms / CPU_NODE_CORES  # the step, then the loader on the same cores
    cpu_node_h = n * cpu_ms / 1000 / 3600
    return {"per_gpu": per_gpu, "bound": bound, "gpu_h": gpu_h, "gpus": gpus, "nodes": nodes,
            "gpus_on_node": gpus_on_node, "storage": storage, "shards": max(1, math.ceil(storage / (SHARD_MB * 1e6))),
            "cache_cap": cache_cap, "cache": min(storage / nodes, cache_cap), "fits_cache": storage / nodes <= cache_cap,
            "stage_in_s": storage / stream_bytes_s, "read_plan": gpus_on_node * per_gpu * m.bytes_per_image,
            "read_full": gpus_per_node * per_gpu * m.bytes_per_image, "stream": stream_bytes_s,
            "cpu_node_h": cpu_node_h, "cpu_nodes": max(1, math.ceil(cpu_node_h / epoch_hours)),
            "epoch_hours": epoch_hours, "gpus_per_node": gpus_per_node, "bytes": m.bytes_per_image}


def limits(p: dict) -> list[tuple[str, float, str]]:
    """(resource, demand / capacity, what happens past 1) for one row's plan; > 1 means saturated.

    The loader-CPU bound is not here: it sets the per-GPU rate at every scale (the "img/s per GPU" column).
    """
    read = p["read_plan"] / p["stream"] if not p["fits_cache"] else 0.0  # a set the cache holds is read once
    return [
        ("one GPU's epoch time", p["gpu_h"] / p["epoch_hours"],
         f"one GPU needs {p['gpu_h']:.1f} h > the {p['epoch_hours']:g} h budget: data-parallel over {p['gpus']} GPUs"),
        ("one node's epoch time", p["gpu_h"] / (p["epoch_hours"] * p["gpus_per_node"]),
         f"one node needs {p['gpu_h'] / p['gpus_per_node']:.1f} h: {p['nodes']} nodes, multi-node NCCL "
         "(not run on a cluster)"),
        ("object-store read per node", read,
         f"the set ({fmt_bytes(p['storage'] / p['nodes'])}/node) outruns the {fmt_bytes(p['cache_cap'])} cache, so "
         f"every epoch streams it: a node needs {fmt_bytes(p['read_plan'])}/s, the measured stream gives "
         f"{fmt_bytes(p['stream'])}/s; at one such stream a GPU gets "
         f"{p['stream'] / p['bytes'] / p['gpus_on_node']:.0f} img/s, not {p['per_gpu']:.0f}"),
    ]


def breaks_first(p: dict) -> str:
    """The resource with the highest demand/capacity past 1, or "nothing" and the nearest one."""
    name, ratio, text = max(limits(p), key=lambda x: x[1])
    if ratio > 1:
        return f"**{name}** ({ratio:.2f}x): {text}"
    out = f"nothing (every ratio under 1); nearest: {name} at {ratio:.2f}"
    if p["fits_cache"] and p["read_plan"] > p["stream"]:
        out += (f"; the set fits the node cache, so only the first epoch streams "
                f"({p['read_plan'] / p['stream']:.2f}x the measured stream: slower, not broken)")
    return out


def table(sizes: list[int], gpus_per_node: int, epoch_hours: float, stream_bytes_s: float = STREAM_BYTES_S,
          models: tuple[Model, ...] = (DET, REC)) -> list[dict[str, str]]:
    rows = []
    for m in models:
        for n in sizes:
            p = plan(n, m, gpus_per_node, epoch_hours, stream_bytes_s)
            rows.append({
                "model": m.kind, "images": f"{n:,}",
                "img/s per GPU (bound)": f"{p['per_gpu']:.0f} ({p['bound']})",
                "GPU-h/epoch": f"{p['gpu_h']:.2f}",
                f"wall h/epoch, 1 node x {gpus_per_node}": f"{p['gpu_h'] / gpus_per_node:.2f}",
                f"GPUs / nodes for a {epoch_hours:g} h epoch": f"{p['gpus']} / {p['nodes']}",
                "storage": fmt_bytes(p["storage"]), f"{SHARD_MB} MB shards": f"{p['shards']:,}",
                "cache/node (set fits?)": f"{fmt_bytes(p['cache'])} ({'yes' if p['fits_cache'] else 'no'})",
                "stage-in at the stream": fmt_s(p["stage_in_s"]),
                "read/node vs the stream: plan; full node": (
                    f"{fmt_bytes(p['read_plan'])}/s = {p['read_plan'] / stream_bytes_s:.2f}x "
                    f"({'fits' if p['read_plan'] <= stream_bytes_s else 'over'}); "
                    f"{fmt_bytes(p['read_full'])}/s = {p['read_full'] / stream_bytes_s:.2f}x "
                    f"({'fits' if p['read_full'] <= stream_bytes_s else 'over'})"),
                f"CPU: {CPU_NODE_CORES}-core-node-h/epoch": f"{p['cpu_node_h']:,.2f}",
                f"{CPU_NODE_CORES}-core nodes for {epoch_hours:g} h": f"{p['cpu_nodes']:,}",
                "breaks first (GPU plan)": breaks_first(p)})
    return rows


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true", help="also measure this machine's per-image data cost")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--epoch-hours", type=float, default=24.0)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 10_000_000])
    p.add_argument("--stream-mb-s", type=float, default=STREAM_BYTES_S / 1e6,
                   help="object-store read rate one node gets (default: the measured one-process stream)")
    args = p.parse_args()
    print("| input | value | where it was measured |")
    print("|---|---|---|")
    for name, value, where in INPUTS:
        print(f"| {name} | {value} | {where} |")
    for m in (DET, REC):
        cores, mib = per_gpu_defaults(m.kind)
        print(f"| {m.kind} default pod (`components/launcher/resources.py`, from the rates above) | "
              f"{cores} cores (1 for the trainer) + {mib} MiB per GPU; feeding the GPU at full speed takes "
              f"{cores_to_feed(m.gpu_img_s, m.data_ms):.1f} loader cores | computed |")
    print(f"| parameters (not measurements) | {args.gpus_per_node} GPUs/node, {args.epoch_hours:g} h epoch budget, "
          f"{SHARD_MB} MB shards, node cache {CACHE_SHARDS_PER_GPU} shards per GPU, "
          f"node read rate {args.stream_mb_s:.1f} MB/s | command line / constants |")
    if args.measure:
        for kind in ("det", "rec"):
            ms, size = measure_data_ms(kind)
            print(f"\nthis machine, {kind} data cost {ms:.1f} ms/img/core (single process, median of 3), "
                  f"synthetic image {fmt_bytes(size)}")
    rows = table(args.sizes, args.gpus_per_node, args.epoch_hours, args.stream_mb_s * 1e6)
    cols = list(rows[0])
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
