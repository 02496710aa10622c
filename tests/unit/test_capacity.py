"""bench/capacity.py: the table is computed from its inputs, and "breaks first" follows them."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import capacity  # noqa: E402
from bench.capacity import DET, REC, breaks_first, limits, plan, table  # noqa: E402


def test_breaks_first_is_computed_per_scale_not_one_text() -> None:
    det = {r["images"]: r["breaks first (GPU plan)"] for r in table([1_000, 100_000, 10_000_000], 8, 24.0)
           if r["model"] == "det"}
    assert det["100,000"] != det["10,000,000"]
    assert "object-store read" in det["100,000"] and "one GPU's epoch time" in det["10,000,000"]


def test_breaks_first_changes_when_an_input_changes() -> None:
    p = plan(100_000, DET, 8, 24.0, capacity.STREAM_BYTES_S)
    assert breaks_first(p).startswith("nothing")
    # a node that streams 10 MB/s cannot feed the 20.3 MB/s one data-bound det GPU reads: the read saturates
    slow = plan(100_000, DET, 8, 24.0, 10e6)
    assert breaks_first(slow).startswith("**object-store read per node**")
    # a 10 h budget is shorter than one GPU's 16.5 h epoch of 10M det images: the GPU saturates first
    assert breaks_first(plan(10_000_000, DET, 8, 24.0, capacity.STREAM_BYTES_S)).startswith("nothing")
    short = plan(10_000_000, DET, 8, 10.0, capacity.STREAM_BYTES_S)
    assert breaks_first(short).startswith("**one GPU's epoch time**") and short["gpus"] == 2
    # a set the node cache holds is read once, so its read rate is not a limit
    assert dict((n, r) for n, r, _ in limits(plan(1_000, DET, 8, 24.0, 10e6)))["object-store read per node"] == 0


def test_rates_and_cpu_hours_come_from_the_inputs() -> None:
    p = plan(10_000_000, DET, 8, 24.0, capacity.STREAM_BYTES_S)
    # 12 cores per GPU, one for the trainer: 11 x 1000 / 65.2 ms = 169 img/s < 552 -> data-bound
    assert p["bound"] == "data" and abs(p["per_gpu"] - 11 * 1000 / DET.data_ms) < 1e-9
    assert abs(p["read_full"] - 8 * p["per_gpu"] * 120_000) < 1e-3
    cpu_s_per_img = 1 / DET.cpu_img_s + DET.data_ms / 1000 / capacity.CPU_NODE_CORES
    assert abs(p["cpu_node_h"] - 10_000_000 * cpu_s_per_img / 3600) < 1e-6
    assert p["cpu_nodes"] == -(-p["cpu_node_h"] // 24)
    faster = dataclasses.replace(DET, cpu_img_s=DET.cpu_img_s * 2)
    assert plan(10_000_000, faster, 8, 24.0, capacity.STREAM_BYTES_S)["cpu_node_h"] < p["cpu_node_h"]
    r = plan(10_000_000, REC, 8, 24.0, capacity.STREAM_BYTES_S)
    assert r["gpu_h"] < p["gpu_h"] and not r["fits_cache"]
    assert breaks_first(r).startswith("**object-store read per node**")
