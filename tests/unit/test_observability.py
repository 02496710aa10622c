"""Observability: Prometheus training metrics, det/rec eval pictures, curves, the HTML report, progress."""

from __future__ import annotations

import base64
import io
import json
import threading
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer

import cv2
import numpy as np
import pytest

from ocr_core.observability import metrics as metrics_mod
from ocr_core.observability.metrics import TrainingMetrics, bind_address, port_for_rank, resolve_port
from ocr_core.observability.plots import write_curves
from ocr_core.observability.report import training_report, write_report
from ocr_core.observability.visualize import (
    BLUE,
    GREEN,
    GREY,
    RED,
    DetEvalVisualizer,
    RecErrorVisualizer,
    draw_det_eval,
)
from ocr_core.progress import progress

LB = {"job": "j1", "role": "train", "rank": "0"}


def _val(m: TrainingMetrics, metric: str, **extra: str) -> float | None:
    return m.registry.get_sample_value(metric, {**LB, **extra})


# ---------------------------------------------------------------- metrics
def test_metrics_move_with_sink():
    m = TrainingMetrics("j1", "train", 0)
    assert _val(m, "ocrflow_train_global_step") == 0.0  # present before the first step
    base = {"lr": 0.01, "samples": 4}
    m.on_step({"loss": 2.0, "loss_shrink_maps": 1.5, **base, "data_seconds": 0.1, "step_seconds": 0.4},
              epoch=1, global_step=1)
    m.on_step({"loss": 1.0, "loss_shrink_maps": 0.5, **base, "data_seconds": 0.3, "step_seconds": 0.8},
              epoch=1, global_step=2)
    assert _val(m, "ocrflow_train_loss", term="loss") == 1.0
    assert _val(m, "ocrflow_train_loss", term="loss_shrink_maps") == 0.5
    assert _val(m, "ocrflow_train_loss", term="lr") is None  # lr/samples/timings are not loss terms
    assert _val(m, "ocrflow_train_learning_rate") == 0.01
    assert _val(m, "ocrflow_train_global_step") == 2 and _val(m, "ocrflow_train_epoch") == 1
    assert _val(m, "ocrflow_train_samples_total") == 8
    # the sink's timings are cumulative within the epoch: per-step values are the differences
    assert _val(m, "ocrflow_train_data_seconds_count") == 2
    assert _val(m, "ocrflow_train_data_seconds_sum") == pytest.approx(0.3)
    assert _val(m, "ocrflow_train_step_seconds_sum") == pytest.approx(0.8)
    assert _val(m, "ocrflow_train_samples_per_second") == pytest.approx(8 / 1.1)
    # a new epoch restarts the cumulative timings
    m.on_step({"loss": 0.5, **base, "data_seconds": 0.05, "step_seconds": 0.2}, epoch=2, global_step=3)
    assert _val(m, "ocrflow_train_data_seconds_sum") == pytest.approx(0.35)
    assert _val(m, "ocrflow_train_step_seconds_sum") == pytest.approx(1.0)
    assert _val(m, "ocrflow_train_epoch") == 2
    m.on_eval({"hmean": 0.5, "precision": 0.4, "recall": 2 / 3, "fps": 3.0}, push=False)
    assert _val(m, "ocrflow_eval_metric", name="hmean") == 0.5
    assert _val(m, "ocrflow_eval_metric", name="recall") == pytest.approx(2 / 3)
    assert _val(m, "ocrflow_eval_runs_total") == 1
    m.on_checkpoint("iter_epoch_3", 1.5)
    m.on_checkpoint("latest", 0.25)
    assert _val(m, "ocrflow_checkpoint_save_seconds_sum", checkpoint="iter_epoch") == 1.5
    assert _val(m, "ocrflow_checkpoint_save_seconds_count", checkpoint="latest") == 1
    assert [p[0] for p in m.loss_points] == [1, 2, 3]
    # a second instance has its own registry: no duplicate-timeseries error, independent values
    other = TrainingMetrics("j1", "train", 0)
    assert other.registry.get_sample_value("ocrflow_train_global_step", LB) == 0.0


def test_loss_points_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics_mod, "MAX_LOSS_POINTS", 10)
    m = TrainingMetrics("j1")
    for step in range(1, 101):
        m.on_step({"loss": float(step)}, epoch=1, global_step=step)
    assert len(m.loss_points) < 10 and m.loss_points[-1][0] > 80


def test_port_and_address_resolution(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv(metrics_mod.PORT_ENV, raising=False)
    assert resolve_port(None) is None  # off by default
    monkeypatch.setenv(metrics_mod.PORT_ENV, "9400")
    assert resolve_port(None) == 9400 and resolve_port(9500) == 9500  # the config wins
    assert bind_address() == "127.0.0.1" and port_for_rank(9400, rank=3, local_rank=1) == 9403
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert bind_address() == "0.0.0.0" and port_for_rank(9400, rank=3, local_rank=1) == 9401


def test_push_to_gateway(monkeypatch):
    got: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(metrics_mod.PUSHGATEWAY_ENV, f"http://127.0.0.1:{server.server_address[1]}")
        m = TrainingMetrics("j1", "teacher", 2)
        m.on_step({"loss": 3.0}, epoch=1, global_step=1)
        m.on_eval({"hmean": 0.25})  # pushes
        assert len(got) == 1
        method, path, body = got[0]
        assert method == "PUT" and path == "/metrics/job/j1/rank/2/role/teacher"
        assert b'ocrflow_eval_metric{job="j1",name="hmean",rank="2",role="teacher"} 0.25' in body
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv(metrics_mod.PUSHGATEWAY_ENV, "http://127.0.0.1:9")  # nothing listens: a warning
    assert TrainingMetrics("j1").push() is False


# ---------------------------------------------------------------- pictures
def _box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def _count(img, region, color):
    x0, y0, x1, y1 = region
    return int(np.all(img[y0:y1, x0:x1] == np.array(color, np.uint8), axis=-1).sum())


def test_draw_det_eval_colours():
    img = np.full((120, 220, 3), 255, np.uint8)
    gt = [_box(10, 10, 60, 40), _box(110, 10, 160, 40), _box(10, 70, 60, 100)]
    ignore = [False, False, True]
    det = [_box(11, 11, 60, 41), _box(150, 70, 200, 100)]  # matches gt 0; a false positive
    out = draw_det_eval(img, gt, ignore, det)
    assert img.min() == 255  # input untouched
    regions = {"matched": (5, 5, 66, 46), "missed": (105, 5, 166, 46), "dont_care": (5, 65, 66, 106),
               "fp": (145, 65, 206, 106)}
    expect = {"matched": GREEN, "missed": BLUE, "dont_care": GREY, "fp": RED}
    for name, region in regions.items():
        for colour in (GREEN, BLUE, GREY, RED):
            n = _count(out, region, colour)
            assert (n > 50) if colour == expect[name] else (n == 0), (name, colour, n)
    assert _count(out, (20, 20, 50, 30), (255, 255, 255)) == 300  # interiors are not filled


def test_det_visualizer_restores_source_image(tmp_path):
    rng = np.random.default_rng(0)
    src = cv2.resize(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8), (120, 100),
                     interpolation=cv2.INTER_NEAREST)
    resized = cv2.resize(src, (64, 64))  # ratio_h 0.64, ratio_w 64/120, padded to 96x96 below
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    chw = np.zeros((3, 96, 96), np.float32)
    chw[:, :64, :64] = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    shape = np.array([[100, 120, 64 / 100, 64 / 120]], np.float32)
    gt = [[_box(10, 10, 60, 40)]]
    vis = DetEvalVisualizer(max_images=1)
    vis([chw[None], shape, gt, [[False]]], [{"points": np.array([_box(10, 10, 60, 40)], np.int32)}])
    vis([chw[None], shape, gt, [[False]]], [{"points": np.zeros((0, 4, 2), np.int32)}])  # over the limit
    assert len(vis.images) == 1 and vis.images[0].shape == (100, 120, 3)
    assert vis.counts == [{"matched": 1, "false_positive": 0, "missed": 0, "dont_care": 0}]
    restored = vis.source_image(chw, shape[0])
    assert np.abs(restored.astype(int) - src.astype(int)).mean() < 40  # lossy down/up-scaling only
    (tmp_path / "vis").mkdir()
    (tmp_path / "vis" / "det_0007.png").write_bytes(b"stale")
    paths = vis.save(tmp_path / "vis")
    assert [p.name for p in paths] == ["det_0000.png"] and not (tmp_path / "vis" / "det_0007.png").exists()
    assert cv2.imread(str(paths[0])).shape == (100, 120, 3)


def test_rec_error_grid(tmp_path):
    imgs = np.zeros((3, 3, 32, 100), np.float32)
    post = ([("he1lo", 0.9), ("world", 0.8), ("", 0.1)], [("hello", 1.0), ("world", 1.0), ("abc", 1.0)])
    vis = RecErrorVisualizer(max_images=8)
    vis([imgs, None], post)
    assert [(p, g) for _, p, g in vis.errors] == [("he1lo", "hello"), ("", "abc")] and vis.seen == 3
    paths = vis.save(tmp_path)
    assert paths == [tmp_path / "rec_errors.png"] and cv2.imread(str(paths[0])) is not None
    assert RecErrorVisualizer().save(tmp_path / "none") == []


# ---------------------------------------------------------------- report
class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[str] = []
        self.imgs: list[str] = []
        self.links: list[tuple[str, dict]] = []
        self.tables = 0
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables += 1
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")
        if tag == "img":
            self.imgs.append(a["src"])
        if tag in ("link", "script") or "href" in a:
            self.links.append((tag, a))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def _png(colour) -> bytes:
    return cv2.imencode(".png", np.full((8, 8, 3), colour, np.uint8))[1].tobytes()


def test_write_report_self_contained(tmp_path):
    png_file = tmp_path / "a.png"
    png_file.write_bytes(_png(10))
    raw = _png(200)
    out = write_report(tmp_path / "r" / "report.html", "Demo <run>", [
        {"title": "Metrics", "table": [{"model": "det", "hmean": 0.8123, "steps": 12},
                                       {"model": "rec", "acc": 0.5, "steps": 7}], "images": None, "text": None},
        {"title": "Timings", "table": [{"step": "train det", "seconds": 61.25}], "text": "per step"},
        {"title": "Pictures", "table": None, "images": [png_file, ("raw bytes", raw)], "text": "a\nb"},
    ])
    text = out.read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    p.close()
    assert p.tables == 2 and p.links == [] and "http" not in text
    cells = [c.strip() for c in p.cells]
    assert cells[:4] == ["model", "hmean", "steps", "acc"]  # columns: keys in first-seen order
    assert cells[4:12] == ["det", "0.8123", "12", "", "rec", "", "7", "0.5"]
    assert ["step", "seconds", "train det", "61.25"] == cells[12:16]
    assert "Demo &lt;run&gt;" in text and "<pre>a\nb</pre>" in text
    assert [base64.b64decode(s.split(",", 1)[1]) for s in p.imgs] == [png_file.read_bytes(), raw]
    assert all(s.startswith("data:image/png;base64,") for s in p.imgs)


def test_training_report_from_summary(tmp_path):
    m = TrainingMetrics("detjob", "teacher", 0)
    for step in range(1, 6):
        m.on_step({"loss": 10.0 / step, "loss_a": 1.0, "lr": 1e-3, "samples": 2, "data_seconds": 0.01 * step,
                   "step_seconds": 0.1 * step}, epoch=1, global_step=step)
    m.on_epoch_end({"loss": 4.0, "steps": 5, "samples": 10, "seconds": 0.6, "ips": 16.7, "data_time": 0.01,
                    "step_time": 0.1})
    m.on_checkpoint("latest", 0.125)
    (tmp_path / "eval_vis").mkdir()
    (tmp_path / "eval_vis" / "det_0000.png").write_bytes(_png(90))
    history = [{"epoch": 1, "global_step": 5, "hmean": 0.375, "precision": 0.5, "recall": 0.3}]
    m.finish(tmp_path, history, best={"hmean": 0.375})
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["evals"] == history and summary["loss"][-1] == [5, {"loss": 2.0, "loss_a": 1.0}]
    assert cv2.imread(str(tmp_path / "curves.png")).shape[:2] == (420, 1100)
    p = _Collect()
    p.feed((tmp_path / "report.html").read_text(encoding="utf-8"))
    cells = [c.strip() for c in p.cells]
    assert "0.375" in cells and "0.125" in cells and "16.7" in cells and "detjob" in cells
    assert len(p.imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert training_report(tmp_path, tmp_path / "again.html").exists()


def test_curves_without_data(tmp_path):
    assert cv2.imread(str(write_curves(tmp_path / "c.png", [], []))) is not None


# ---------------------------------------------------------------- progress
def test_progress_lines_not_a_tty():
    buf = io.StringIO()
    for _ in progress(range(1000), desc="work", stream=buf):
        pass
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and 1 <= len(lines) <= 10
    assert lines[-1].startswith("work: 1000/1000 (100%)")


def test_cli_output_has_no_carriage_returns(tmp_path, capsys):
    from ocr_core.cli import main

    data = tmp_path / "words"
    data.mkdir()
    ok, buf = cv2.imencode(".png", np.full((16, 40, 3), 180, np.uint8))
    lines = []
    for i in range(120):
        (data / f"w{i}.png").write_bytes(buf.tobytes())
        lines.append(f"w{i}.png\tword{i}")
    (tmp_path / "label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["build-lmdb", "--label-file", str(tmp_path / "label.txt"), "--data-dir", str(data),
                 "--out", str(tmp_path / "lmdb")]) == 0
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(120):
        (gt / f"gt_img_{i}.txt").write_text("1,1,30,1,30,15,1,15,Hi\n", encoding="utf-8")
    assert main(["convert-labels", "--mode", "det", "--gt-dir", str(gt), "--out", str(tmp_path / "det.txt")]) == 0
    cap = capsys.readouterr()
    out = cap.out + cap.err
    assert "\r" not in out
    assert len(out.splitlines()) <= 25, out


def test_grafana_dashboard_uses_exported_names(repo_root):
    import re

    dash = json.loads((repo_root / "manifests/monitoring/grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"ocrflow_\w+", e)}
    m = TrainingMetrics("j1")
    m.on_step({"loss": 1.0, "lr": 0.1, "samples": 1, "data_seconds": 0.1, "step_seconds": 0.1}, epoch=1, global_step=1)
    m.on_eval({"hmean": 0.5}, push=False)
    m.on_checkpoint("latest", 0.1)
    m.gpu_mem.labels(**LB).set(1)
    exported = {s.name for fam in m.registry.collect() for s in fam.samples}
    assert used and used <= exported, used - exported
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "job", "role", "rank"}
