"""bench/ic15_recipe.py --dry-run on a synthetic raw layout (the real run needs ICDAR2015 data,
which no CI test may use): every path of the recipe (labels, word crops, off-the-shelf eval,
loader probe, budgeted fine-tune, report) runs and the report holds both numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_recipe_dry_run(tmp_path: Path) -> None:
    from ocr_core.weights.ppocr_weights import WeightsImportError, fetch_rapidocr_wheel, import_ppocrv3
    from pipelines.sample_data import make_raw_dataset

    try:
        wheel = fetch_rapidocr_wheel()
    except WeightsImportError as exc:
        pytest.skip(f"rapidocr-onnxruntime==1.2.13 wheel unavailable: {exc}")
    for kind in ("det", "rec"):
        import_ppocrv3(kind, tmp_path / "w" / f"ppocrv3_{kind}.pt", wheel=wheel)
    raw = make_raw_dataset(tmp_path / "raw", det_train=4, det_test=4, rec_train=4, rec_test=4, seed=3)
    shutil.rmtree(raw / "rec")  # the recipe cuts word crops from the det gt when there are none
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ic15_recipe.py"), "--raw", str(raw), "--weights",
                           str(tmp_path / "w"), "--out", str(out), "--device", "cpu", "--dry-run", "--workers", "0"],
                          capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for kind, metric in (("det", "hmean"), ("rec", "acc")):
        r = res[kind]
        assert 0.0 <= r["off_the_shelf"][metric] <= 1.0 and 0.0 <= r["fine_tuned"][metric] <= 1.0
        assert r["global_step"] >= 1 and r["curve"] and r["epochs"] == 1
        weights = torch.load(r["weights"], weights_only=True)  # the final model, without optimizer state
        assert "optimizer" not in weights and weights["global_step"] == r["global_step"]
    assert res["data"]["rec_test_words"] >= 1 and (out / "rec" / "test" / "gt.txt").is_file()
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| PP-OCRv3 det | hmean |" in table and "| PP-OCRv3 rec | acc |" in table
