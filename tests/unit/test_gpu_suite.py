"""bench/gpu_suite.py --dry-run on CPU: every row runs (or is skipped for a stated reason), none errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = [f"train/{m}/{v}" for m in ("det_mv3_db", "ppocrv3_student", "ppocrv3_cml", "rec_svtr")
        for v in ("fp32", "amp", "amp_cl", "compile")]
ROWS += ["loader/det_mv3_db", "eval/ppocrv3_student"]
ROWS += [f"parity/{m}/{r}" for m in ("det_student", "rec_svtr") for r in ("ort_cpu", "ort_cuda", "tensorrt")]
# rows that may be skipped on CPU: compile is on for det_mv3_db and rec only; no CUDA, no TensorRT
MAY_SKIP = {"train/ppocrv3_student/compile", "train/ppocrv3_cml/compile"} | {
    r for r in ROWS if r.endswith(("/ort_cuda", "/tensorrt"))}
MEASURED = [r for r in ROWS if r not in MAY_SKIP]


def test_dry_run_table(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/gpu_suite.py"), "--dry-run", "--device", "cpu",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in report["rows"]}
    assert sorted(rows) == sorted(ROWS)
    assert report["pending"] == []
    errors = {n: r["note"] for n, r in rows.items() if r["status"] in ("error", "timeout")}
    assert not errors, errors
    for name in MEASURED:
        assert rows[name]["status"] == "ok", (name, rows[name])
        if name.startswith("train/"):
            assert rows[name]["img_s"] > 0 and rows[name]["ms_step"] > 0 and rows[name]["steps"] == 2
    assert rows["loader/det_mv3_db"]["verdict"] in ("data-bound", "GPU-bound")
    assert rows["eval/ppocrv3_student"]["img_s"] > 0
    for which in ("det_student", "rec_svtr"):
        diff = rows[f"parity/{which}/ort_cpu"]["max_abs_diff"]
        assert 0 <= diff < 1e-3, (which, diff)
        assert rows[f"parity/{which}/tensorrt"]["note"].startswith("skipped: tensorrt")
    assert "env" in report and report["env"]["device"] == "cpu"
    # the same table in both outputs
    md = (out / "gpu_suite.md").read_text(encoding="utf-8")
    for name in ROWS:
        assert f"| {name} |" in md
        assert name in proc.stdout


def test_bad_arguments_exit_nonzero(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench/gpu_suite.py"), "--dry-run", "--only", "nope/*",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "matches no row" in proc.stderr
