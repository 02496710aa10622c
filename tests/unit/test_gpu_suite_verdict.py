"""The GPU suite's loader verdict compares with the fastest det_mv3_db train step of the run."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu_suite_parts import loader_verdict  # noqa: E402


def test_verdict_uses_the_fastest_train_row_not_the_amp_only_one() -> None:
    # the H200 run of 2026-12-04: AMP 221.7, AMP + channels_last 500.7, loader 245.5
    results = {"train/det_mv3_db/fp32": {"status": "ok", "img_s": 234.7},
               "train/det_mv3_db/amp": {"status": "ok", "img_s": 221.7},
               "train/ppocrv3_student/amp_cl": {"status": "ok", "img_s": 552.0},  # another model: ignored
               "train/det_mv3_db/compile": {"status": "error"}}
    assert loader_verdict(245.5, results, "")["verdict"] == "GPU-bound"  # only AMP/fp32 measured so far
    results["train/det_mv3_db/amp_cl"] = {"status": "ok", "img_s": 500.7}
    v = loader_verdict(245.5, results, "16 workers")
    assert v["verdict"] == "data-bound" and v["train_row"] == "train/det_mv3_db/amp_cl"
    assert v["train_img_s"] == 500.7 and "loader/train 0.49" in v["detail"]
    assert loader_verdict(245.5, {}, "")["verdict"] == "n/a"
