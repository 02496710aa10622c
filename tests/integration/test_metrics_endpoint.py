"""Scrape ``/metrics`` over HTTP twice DURING a short real det training run (thread, loopback).

The test paces the run: after optimizer steps 1 and 3 the metrics sink waits until the test
has scraped, so the check does not depend on how fast this machine trains.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_core.config import load_config
from ocr_core.engine import run as engine_run
from ocr_core.observability.metrics import TrainingMetrics

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def _split(out: Path, num: int, seed: int) -> Path:
    """``num`` 128x160 images with two dark words each, and their PaddleOCR det label file."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True)
    lines = []
    for i in range(num):
        img = np.full((128, 160, 3), int(rng.integers(160, 230)), np.uint8)
        boxes = []
        for k in range(2):
            x0, y0 = int(rng.integers(4, 70)), 8 + 56 * k + int(rng.integers(0, 10))
            cv2.putText(img, f"Txt{k}", (x0, y0 + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (20, 20, 20), 2)
            boxes.append({"transcription": f"Txt{k}",
                          "points": [[x0, y0], [x0 + 70, y0], [x0 + 70, y0 + 28], [x0, y0 + 28]]})
        cv2.imwrite(str(out / "images" / f"img_{i}.png"), img)
        lines.append(f"images/img_{i}.png\t{json.dumps(boxes)}")
    (out / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "label.txt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
            out[(m["name"], labels)] = float(m["value"])
    return out


def _one(samples, name: str, **labels: str) -> float:
    hits = [v for (n, lb), v in samples.items() if n == name and set(labels.items()) <= lb]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def test_metrics_scraped_during_training(tmp_path, monkeypatch):
    for var in ("KUBERNETES_SERVICE_HOST", "RANK", "WORLD_SIZE", "LOCAL_RANK", "OCRFLOW_PUSHGATEWAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OCRFLOW_ROLE", "student")
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    _split(train_dir, 4, 0)
    _split(eval_dir, 1, 1)
    port = _free_port()
    cfg = load_config(ROOT / "configs/det/det_mv3_db.yml", [
        f"Global.save_model_dir={tmp_path / 'out'}", "Global.model_name=obsdet", f"Global.metrics_port={port}",
        "Global.epoch_num=2", "Global.max_steps=4", "Global.use_gpu=false", "Global.print_batch_step=2",
        "Global.eval_batch_step=[0, 100000]", "Global.save_epoch_step=1000", "Global.seed=7",
        "Global.eval_visualize=1",
        "Architecture.Backbone.scale=0.35", "Architecture.Neck.out_channels=32",
        f"Train.dataset.data_dir={train_dir}", f"Train.dataset.label_file_list=[{train_dir / 'label.txt'}]",
        "Train.dataset.transforms.EastRandomCropData.size=[64, 64]", "Train.loader.batch_size_per_card=2",
        "Train.loader.num_workers=0",
        f"Eval.dataset.data_dir={eval_dir}", f"Eval.dataset.label_file_list=[{eval_dir / 'label.txt'}]",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 96, limit_type: max}",
        "Eval.loader.num_workers=0",
    ])

    # pace the run: block in the sink after steps 1 and 3 until the test has scraped
    reached = {1: threading.Event(), 3: threading.Event()}
    scraped = {1: threading.Event(), 3: threading.Event()}
    instances: list[TrainingMetrics] = []
    original = TrainingMetrics.on_step

    def paced(self, d, epoch=None, global_step=None):
        if self not in instances:
            instances.append(self)
        original(self, d, epoch, global_step)
        step = int(self.state.global_step)
        if step in reached:
            reached[step].set()
            scraped[step].wait(timeout=120)

    monkeypatch.setattr(TrainingMetrics, "on_step", paced)
    result: dict = {}

    def target():
        try:
            result["out"] = engine_run.train(cfg)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    try:
        scrapes = []
        for step in (1, 3):
            if not reached[step].wait(timeout=240):
                pytest.fail(f"training did not reach step {step}: {result.get('error')!r}")
            scrapes.append(_scrape(port))
            scraped[step].set()
    finally:
        for ev in scraped.values():
            ev.set()
        worker.join(timeout=300)
    assert not worker.is_alive()
    if "error" in result:
        raise result["error"]

    lb = {"job": "obsdet", "role": "student", "rank": "0"}
    first, second = scrapes
    assert _one(first, "ocrflow_train_global_step", **lb) == 1
    assert _one(second, "ocrflow_train_global_step", **lb) == 3
    assert _one(second, "ocrflow_train_samples_total", **lb) == 6
    for samples in scrapes:
        for term in ("loss", "loss_shrink_maps", "loss_threshold_maps", "loss_binary_maps"):
            assert math.isfinite(_one(samples, "ocrflow_train_loss", term=term, **lb))
        assert _one(samples, "ocrflow_train_learning_rate", **lb) > 0
        assert _one(samples, "ocrflow_train_step_seconds_count", **lb) >= 1
    assert _one(second, "ocrflow_train_loss", term="loss", **lb) != _one(first, "ocrflow_train_loss", term="loss", **lb)
    assert _one(second, "ocrflow_train_epoch", **lb) == 2  # 2 steps per epoch
    # served on loopback (not in a pod), and stopped when training returned
    assert len(instances) == 1 and instances[0].server is None
    with pytest.raises(OSError):
        _scrape(port)
    # the eval / checkpoint metrics and the files written at the end
    m = instances[0]
    assert m.registry.get_sample_value("ocrflow_eval_runs_total", lb) == 1
    assert m.registry.get_sample_value("ocrflow_eval_metric", {**lb, "name": "hmean"}) is not None
    assert m.registry.get_sample_value("ocrflow_checkpoint_save_seconds_count", {**lb, "checkpoint": "latest"}) == 2
    out = tmp_path / "out"
    assert result["out"]["global_step"] == 4
    for name in ("curves.png", "report.html", "training_summary.json", "eval_vis/det_0000.png"):
        assert (out / name).exists(), name
    assert "data:image/png;base64," in (out / "report.html").read_text(encoding="utf-8")
