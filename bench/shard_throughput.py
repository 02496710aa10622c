"""Data-loading throughput: ShardDataSet streamed from the embedded S3 server vs local LMDB vs local files.

The same synthetic word crops (``synth_rec``) are read three ways through the same transforms
(``configs/rec/rec_icdar15_train.yml``'s Train list: DecodeImage -> CTCLabelEncode -> RecResizeImg
-> KeepKeys) and the same DataLoader settings: SimpleDataSet over the image files, LMDBDataSet over an
LMDB built from them (``build_lmdb``), and ShardDataSet over shards built from them (``build_shards``)
and uploaded to a SeaweedFS server on 127.0.0.1, read with a cold cache every run (every shard is
downloaded and its sha256 checked inside the timing) and with a warm one (a later epoch on a node
whose cache holds the rank's shards). A local-directory shard row is printed too.
Runs are interleaved and the median of ``--repeats`` full epochs is reported, as wall-clock samples/s
and as CPU time per sample (this process and its workers; the S3 server's own CPU is not in it,
but is in the wall time). On a shared machine the CPU column is the steadier one.

    python bench/shard_throughput.py [--samples 4000] [--batch 64] [--workers 0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core.config import load_config  # noqa: E402
from ocr_core.data.lmdb_build import build_lmdb  # noqa: E402
from ocr_core.data.loader import build_dataloader  # noqa: E402
from ocr_core.data.shard_format import build_shards  # noqa: E402
from ocr_core.data.synth import synth_rec  # noqa: E402
from ocr_core.storage.embedded import EmbeddedS3  # noqa: E402


def epoch_seconds(cfg: dict[str, Any]) -> tuple[float, float, int]:
    """Wall and CPU seconds (this process and its children) to draw one shuffled epoch (dataset
    construction excluded), and the samples drawn."""
    _ds, loader, sampler = build_dataloader(cfg, "Train")
    sampler.set_epoch(1)
    t0, c0 = time.perf_counter(), _cpu()
    n = sum(len(batch[0]) for batch in loader)
    return time.perf_counter() - t0, _cpu() - c0, n


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shard-size", default="8MB")
    args = ap.parse_args()

    base = load_config(ROOT / "configs/rec/rec_icdar15_train.yml")
    transforms = base["Train"]["dataset"]["transforms"]
    tmp = Path(tempfile.mkdtemp(prefix="ocrflow-shard-bench-"))
    try:
        data = tmp / "words"
        synth_rec(str(data), num=args.samples, seed=0)
        label = str(data / "rec_gt.txt")
        build_lmdb([label], str(data), str(tmp / "lmdb" / "train"))
        local_shards = tmp / "shards"
        build_shards([label], str(data), str(local_shards), "rec", args.shard_size, quiet=True)
        with EmbeddedS3(tmp / "s3", bucket="ocrflow-bench") as s3:
            os.environ.update(s3.env)
            prefix = f"s3://{s3.bucket}/bench/shards"
            stats = build_shards([label], str(data), prefix, "rec", args.shard_size, quiet=True)
            total_mb = stats.bytes / 1e6

            def cfg(dataset: dict[str, Any]) -> dict[str, Any]:
                return {"Global": {"seed": 0, "character_dict_path": None, "max_text_length": 25,
                                   "use_space_char": False},
                        "Train": {"dataset": {**dataset, "transforms": transforms},
                                  "loader": {"shuffle": True, "batch_size_per_card": args.batch,
                                             "num_workers": args.workers, "drop_last": False}}}

            rows = {
                "local files (SimpleDataSet)": lambda i: cfg({"name": "SimpleDataSet", "data_dir": str(data),
                                                              "label_file_list": [label]}),
                "local LMDB (LMDBDataSet)": lambda i: cfg({"name": "LMDBDataSet", "data_dir": str(tmp / "lmdb")}),
                "shards, local dir (ShardDataSet)": lambda i: cfg({"name": "ShardDataSet",
                                                                   "data_dir": str(local_shards)}),
                "shards, S3 loopback, cold cache (ShardDataSet)": lambda i: cfg(
                    {"name": "ShardDataSet", "data_dir": prefix, "cache_dir": str(tmp / f"cache{i}"),
                     "cache_size": "64MB"}),
                "shards, S3 loopback, warm cache (ShardDataSet)": lambda i: cfg(
                    {"name": "ShardDataSet", "data_dir": prefix, "cache_dir": str(tmp / "cache-warm"),
                     "cache_size": "64MB"}),
            }
            times: dict[str, list[float]] = {k: [] for k in rows}
            cpus: dict[str, list[float]] = {k: [] for k in rows}
            for i in range(args.repeats + 1):  # run 0 warms the page cache and imports
                for name, make in rows.items():
                    sec, cpu, n = epoch_seconds(make(i))
                    assert n == args.samples, (name, n)
                    if i:
                        times[name].append(sec)
                        cpus[name].append(cpu)
                shutil.rmtree(tmp / f"cache{i}", ignore_errors=True)
        lmdb = "local LMDB (LMDBDataSet)"
        ref, ref_cpu = statistics.median(times[lmdb]), statistics.median(cpus[lmdb])
        print(f"\n{args.samples} rec samples ({total_mb:.1f} MB in {stats.shards} shards of <= {args.shard_size}), "
              f"batch {args.batch}, num_workers {args.workers}, median of {args.repeats} epochs")
        print(f"| {'source':<48} | samples/s | vs local LMDB | CPU ms/sample | vs local LMDB |")
        print(f"|{'-' * 50}|----------:|--------------:|--------------:|--------------:|")
        for name in rows:
            sec, cpu = statistics.median(times[name]), statistics.median(cpus[name])
            print(f"| {name:<48} | {args.samples / sec:9.0f} | {ref / sec - 1:+13.1%} | "
                  f"{1000 * cpu / args.samples:13.3f} | {cpu / ref_cpu - 1:+13.1%} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
