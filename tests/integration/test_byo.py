"""Bring your own detectors: EAST trains, evaluates, exports and predicts like DB (CPU, synthetic data).

The CI-sized EAST run, measured on the shared 2-core CPU box: det_mv3_east from scratch on 48
synthetic 128x128 images (``make_glyph_split``: 1-3 upright strings of 1-2 digits/capitals in
22-34 px type per image); EASTProcessTrain at 96 px with ``rotate_ratio: 0`` (PaddleOCR's fixed 0.5
90/180/270-degree turns cost most of the hmean in a run this short); batch 4; Adam at a constant
lr 0.005 (the config's 0.001 is for 10,000 epochs); 40 epochs = 480 steps; ``Global.seed: 7`` and
2 torch threads (the thread count changes the float sums, and so the run). PostProcess keeps
PaddleOCR's ``score_thresh`` 0.8. Measured: the logged loss (smoothed, every 12 steps) falls from
0.206 to 0.011; on 16 held-out images (30 boxes) precision 0.684, recall 0.867, **hmean 0.765**;
~78 s for training + evaluation, ~85 s for the whole test. Seeds 5, 8 and 9 reach hmean 0.933,
0.915 and 0.636, so the test asserts hmean >= 0.4 (margin for other CPUs' float paths). (With 3-glyph strings, seeds 5-9 give 0.29-0.85;
with rotation left at 0.5, ~0.1.)
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ocr_core.config import load_config
from ocr_core.engine.run import train
from tests.integration.det_fixtures import ROOT, make_glyph_split


@pytest.fixture(scope="module")
def east_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("east")
    make_glyph_split(root / "train", num=48, seed=21, size=(128, 128), max_chars=2)
    make_glyph_split(root / "eval", num=16, seed=22, size=(128, 128), max_chars=2)
    return root / "train", root / "eval"


def _east_config(train_dir: Path, eval_dir: Path, save_dir: Path, epochs: int) -> dict:
    return load_config(ROOT / "configs/det/det_mv3_east.yml", [
        f"Global.save_model_dir={save_dir}", f"Global.epoch_num={epochs}", "Global.use_gpu=false",
        "Global.print_batch_step=12", "Global.eval_batch_step=[0, 100000]", "Global.save_epoch_step=1000",
        "Global.seed=7", "Global.num_threads=2", "Optimizer.lr.learning_rate=0.005",
        f"Train.dataset.data_dir={train_dir}", f"Train.dataset.label_file_list=[{train_dir / 'label.txt'}]",
        "Train.dataset.transforms.EASTProcessTrain.image_shape=[96, 96]",
        "Train.dataset.transforms.EASTProcessTrain.rotate_ratio=0",
        "Train.loader.batch_size_per_card=4", "Train.loader.num_workers=0",
        f"Eval.dataset.data_dir={eval_dir}", f"Eval.dataset.label_file_list=[{eval_dir / 'label.txt'}]",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 128, limit_type: max}",
        "Eval.loader.num_workers=0",
    ])


@pytest.mark.slow
def test_east_trains_evaluates_exports_and_predicts(east_data: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, eval_dir = east_data
    cfg = _east_config(train_dir, eval_dir, tmp_path / "out", epochs=40)
    assert cfg["PostProcess"]["score_thresh"] == 0.8
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        out = train(cfg)
    finally:
        torch.set_num_threads(threads)
    assert out["global_step"] == 480
    log = (tmp_path / "out" / "train.log").read_text(encoding="utf-8")
    losses = [float(v) for v in re.findall(r"global_step: \d+, lr: [\d.e-]+, loss: ([\d.]+)", log)]
    assert len(losses) == 40
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < 0.2 * first, losses
    metric = out["best_metric"]
    print(f"EAST: loss {losses[0]:.3f} -> {losses[-1]:.3f}; precision {metric['precision']:.3f}, "
          f"recall {metric['recall']:.3f}, hmean {metric['hmean']:.3f}; {time.perf_counter() - t0:.0f} s")
    assert metric["hmean"] >= 0.4, metric  # measured 0.765 (seeds 5-9: 0.636-0.933); margin for other CPUs

    from ocr_core.export.onnx_export import export_onnx
    from ocr_core.inference.predictors import DetPredictor

    result = export_onnx(cfg, tmp_path / "export", checkpoint=str(tmp_path / "out" / "latest.pt"))
    pred = DetPredictor(result.onnx_path, score_thresh=0.5)
    assert pred.algorithm == "EAST" and pred.post["score_thresh"] == 0.5
    img = cv2.imread(str(next((eval_dir / "images").iterdir())))
    found = pred(img)
    assert found["points"].ndim == 3 and found["points"].shape[1:] == (4, 2) and len(found["points"]) >= 1
