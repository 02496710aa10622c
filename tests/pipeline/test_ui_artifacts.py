"""What the Kubeflow UI shows: every component's Markdown/HTML report and Metrics keys.

The components that write reports or metrics (evaluate det/rec, system eval, gate, export, export
start, train: its HTML artifact is the run's own ``report.html``; check new data, validate data) run
here as plain functions (``component.python_func``) with their heavy step functions stubbed, so what
they write is exactly what a run writes (export start runs its real content-keyed step around the
stubbed export; check new data and validate data run their real steps on a tiny local dataset, only
the production pointer stubbed). Checked: reports are
self-contained (no URL the UI's sandboxed iframe would fetch, pictures inlined as ``data:`` URIs,
under the UI's size limits), render in a real headless browser (Debian's chromium: DOM holds the
numbers, the screenshot is not blank), and every Metrics key (of every component with an
``Output[Metrics]``) follows the one naming of ``components/_kfp_io.py`` so the run-compare view
lines runs up, or is one of its ``COUNTERS``; the numbers logged are the ones the stubs fed in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components import _kfp_io

CHROMIUM = "/usr/bin/chromium"
COMPONENTS = Path(__file__).resolve().parents[2] / "components"
START_DET = {"precision": 0.5625, "recall": 0.25, "hmean": 0.34615, "fps": 7.5}  # the start model's eager Eval


class FakeArtifact:
    """What a KFP artifact offers a component: ``path``, ``metadata``, ``log_metric``."""

    def __init__(self, path: Path, content: dict | None = None) -> None:
        self.path, self.metadata, self.metrics, self.uri = str(path), {}, {}, f"file://{path}"
        if content is not None:
            path.write_text(json.dumps(content))

    def log_metric(self, key: str, value: float) -> None:  # kfp's Metrics keeps them in metadata too
        self.metadata[key] = self.metrics[key] = value


def training_run(save_dir: Path) -> Path:
    """A training output dir as the engine leaves it (summary, curves, eval pictures, config) and its
    ``report.html`` written by the real ``training_report``: full-size noisy PNGs, several MB."""
    from ocr_core.observability.report import training_report

    (save_dir / "eval_vis").mkdir(parents=True)
    (save_dir / "training_summary.json").write_text(json.dumps({
        "labels": {"job": "det_finetune", "role": "finetune"}, "loss": [[1, 0.91], [30, 0.42]],
        "best_metric": {"hmean": 0.75163, "precision": 0.81234, "recall": 0.70111, "best_epoch": 3},
        "evals": [{"step": 30, "hmean": 0.75163}], "epochs": [{"epoch": 1, "steps": 30, "seconds": 12.5}]}))
    (save_dir / "curves.png").write_bytes(picture(99, 1600, 1000))
    for i in range(3):
        (save_dir / "eval_vis" / f"det_{i:04d}.png").write_bytes(picture(10 + i))
    (save_dir / "config.yml").write_text("Global:\n  epoch_num: 3\nTrain:\n  dataset:\n    name: ShardDataSet\n")
    return training_report(save_dir)


def tiny_dataset(root: Path) -> Path:
    """A converted dataset (components/steps/data.py's layout) of 48x32 pictures: det/train 3 lines (one
    without a tab), 3 boxes; det/test 1 line, 2 boxes; rec/train 3 lines; rec/test 2 lines (one names
    a missing picture). 9 lines, 2 bad."""
    import cv2

    box = '{{"transcription": "{t}", "points": [[{x}, 4], [{x2}, 4], [{x2}, 20], [{x}, 20]]}}'
    one, two = f"[{box.format(t='AB', x=2, x2=20)}]", f"[{box.format(t='AB', x=2, x2=20)}, {box.format(t='CD', x=24, x2=44)}]"
    files = {"det/train_label.txt": [f"det/train/images/a.jpg\t{one}", f"det/train/images/b.jpg\t{two}", "no tab here"],
             "det/test_label.txt": [f"det/test/images/c.jpg\t{two}"],
             "rec/train_label.txt": [f"rec/train/w{i}.png\tAB" for i in range(3)],
             "rec/test_label.txt": ["rec/test/w0.png\tCD", "rec/test/missing.png\tEF"]}
    for label, lines in files.items():
        (root / label).parent.mkdir(parents=True, exist_ok=True)
        (root / label).write_text("\n".join(lines) + "\n")
        for picture_path in (root / line.split("\t")[0] for line in lines if "\t" in line and "missing" not in line):
            picture_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(picture_path), np.full((32, 48, 3), 255, np.uint8))
    return root


def picture(seed: int, w: int = 1280, h: int = 720) -> bytes:
    """A detection picture as detection_pairs returns it (PNG bytes, full resolution, noisy: compresses badly)."""
    import cv2

    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.rectangle(img, (100, 100), (600, 300), (0, 255, 0), 4)
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the components; returns {"reports": name -> (kind, text), "metrics": name -> {key: value}}."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("ui")
    real_write_info = _kfp_io.write_info
    mp.setenv("OCRFLOW_WORK_DIR", str(tmp / "work"))
    import components.steps.data as data_steps
    import components.steps.models as models
    import components.steps.registry as registry
    import components.steps.train as train_steps
    import ocr_core.storage.manifest as manifest

    det = {"precision": 0.81234, "recall": 0.70111, "hmean": 0.75163, "fps": 12.5}
    e2e = {"candidate": {"precision": 0.6612, "recall": 0.5409, "hmean": 0.5950}, "start": None, "production": None}
    mp.setattr(registry, "production_pointer", lambda *a: None)
    mp.setattr(models, "evaluate_models", lambda model_type, *a: {
        "candidate": det if model_type == "det" else {"acc": 0.8125, "norm_edit_dis": 0.9375, "fps": 99.0},
        "off_the_shelf": {**det, "hmean": 0.32871} if model_type == "det" else {"acc": 0.5, "norm_edit_dis": 0.75}})
    mp.setattr(models, "system_eval_uris", lambda d, r, data: {"precision": 0.4, "recall": 0.1, "hmean": 0.16}
               if "start" in d else e2e["candidate"])
    mp.setattr(models, "fetch_onnx", lambda uri, dest: Path(dest) / "model.onnx")
    mp.setattr(models, "detection_pairs", lambda *a, **k: [
        {"image": f"images/img_{i}.jpg", "a": picture(2 * i), "b": picture(2 * i + 1)} for i in range(3)])
    mp.setattr(manifest, "sync_down", lambda *a, **k: None)
    mp.setattr(models, "export_model", lambda *a, **k: None)  # write_info (below) says what it exported
    parity = {"max_abs": 5.9e-08, "passed": True, "metric": "hmean", "eager": det, "onnx": det}
    mp.setattr(_kfp_io, "write_info", lambda art, m: {"uri": "s3://ocrflow/runs/k/det-onnx", "extra": {"parity": parity}})

    run_dir = tmp / "train-run"
    full_report = training_run(run_dir)
    from ocr_core.storage.manifest import Manifest

    trained = Manifest("model", str(run_dir), [manifest.FileEntry("report.html", full_report.stat().st_size, "0" * 64)])
    mp.setattr(train_steps, "launch_training_step", lambda *a, **k: trained)

    from components.check_new_data import check_new_data
    from components.evaluate import evaluate
    from components.export import export
    from components.export_start import export_start
    from components.gate import gate
    from components.system_eval import system_eval
    from components.train import train
    from components.validate_data import validate_data

    def art(name: str, content: dict | None = None) -> FakeArtifact:
        return FakeArtifact(tmp / name, content)

    model = {"uri": "s3://ocrflow/runs/k/det"}
    reports: dict[str, tuple[str, str]] = {}
    metrics: dict[str, dict] = {}
    for kind in ("det", "rec"):
        m, rep = art(f"eval-{kind}-metrics"), art(f"eval-{kind}.md")
        evaluate.python_func(kind, art(f"m-{kind}", model), art(f"d-{kind}", {"uri": "s3://ocrflow/ds"}), [], "s3://ocrflow/start",
                             "s3://ocrflow", "ppocrv3", m, rep, art(f"eval-{kind}-result"))
        reports[f"evaluate {kind}"], metrics[f"evaluate {kind}"] = ("markdown", Path(rep.path).read_text()), m.metrics
    m, rep, result = art("sys-metrics"), art("sys.html"), art("sys-result")
    system_eval.python_func(art("det", {"uri": "s3://ocrflow/cand-det"}), art("rec", {"uri": "s3://ocrflow/cand-rec"}),
                            art("sdet", {"uri": "s3://ocrflow/start-det"}), art("srec", {"uri": "s3://ocrflow/start-rec"}),
                            art("data", {"uri": "s3://ocrflow/ds"}), "s3://ocrflow", "ppocrv3", m, rep, result)
    reports["system eval"], metrics["system eval"] = ("html", Path(rep.path).read_text()), m.metrics
    m, rep = art("gate-metrics"), art("gate.md")
    gate.python_func(FakeArtifact(Path(result.path)), 0.0, m, rep)
    reports["gate"], metrics["gate"] = ("markdown", Path(rep.path).read_text()), m.metrics
    m = art("parity")
    export.python_func("det", art("em", model), art("ed", {"uri": "s3://ocrflow/ds"}), [], 1e-3, art("onnx"), m)
    metrics["export"] = m.metrics

    # export start: the real content-keyed export_start_model (the start model's manifest and the reuse
    # check stubbed) and the real write_info; export_model's stub returns what a start export publishes
    start_parity = {"max_abs": 3.1e-07, "passed": True, "metric": "hmean", "eager": START_DET, "onnx": START_DET}
    exported: list[str] = []
    mp.setattr(models, "read_manifest", lambda uri: Manifest("model", uri, []))
    mp.setattr(models, "is_published", lambda uri: False)
    mp.setattr(models, "export_model", lambda model_type, src, data_uri, out_uri, *a, **k: exported.append(out_uri)
               or Manifest("model", out_uri, [manifest.FileEntry("model.onnx", 1, "1" * 64)], extra={"parity": start_parity}))
    mp.setattr(_kfp_io, "write_info", real_write_info)
    m, onnx = art("start-parity"), art("start-onnx")
    export_start.python_func("det", "s3://ocrflow/start-det", art("sd", {"uri": "s3://ocrflow/ds"}), [], 1e-3,
                             "s3://ocrflow", onnx, m)
    metrics["export start"] = m.metrics
    m, none = art("start-parity-none"), art("start-onnx-none")
    export_start.python_func("rec", "", art("sd", {"uri": "s3://ocrflow/ds"}), [], 1e-3, "s3://ocrflow", none, m)
    start = {"exported": exported, "onnx": onnx.metadata, "none": json.loads(Path(none.path).read_text()),
             "none_metrics": m.metrics}
    m, rep = art("train-metrics"), art("train.html")
    train.python_func(model_type="det", config="c.yml", overrides=[], extra_overrides=[], data=art("td", {"uri": "s3://d"}),
                      step="det_finetune", store_root="s3://ocrflow", launcher="inprocess", workers=1, gpus=0, epochs=1,
                      model=art("train-model"), metrics=m, report=rep, shards=art("ts", {"uri": "s3://d-shards"}))
    reports["train"], metrics["train"] = ("html", Path(rep.path).read_text()), m.metrics

    # check new data: the real step (the raw dataset's digest, the decision) against a stubbed pointer
    raw = tiny_dataset(tmp / "raw")
    digest = data_steps.dataset_digest(str(raw))
    for name, pointer in (("check new data", None),
                          ("check new data (seen)", {"version": "v3", "data": {"uri": str(raw), "digest": digest}})):
        mp.setattr(data_steps, "production_pointer", lambda registry_uri, model_name, p=pointer: p)
        m = art(name.replace(" ", "-"))
        outs = [str(tmp / f"{name}-{o}") for o in ("incoming", "production", "version", "fingerprint")]
        returned = check_new_data.python_func(str(raw), "s3://ocrflow/registry", "ppocrv3", m, *outs)
        metrics[name] = m.metrics
        assert returned is (pointer is None) and Path(outs[0]).read_text() == digest

    # validate data: the real step on the same dataset, published to a local store
    from ocr_core.storage.manifest import sync_up

    sync_up(raw, str(tmp / "store" / "ds"), quiet=True)
    m = art("validate-stats")
    validate_data.python_func(art("vd", {"uri": str(tmp / "store" / "ds")}), 0.25, m)
    metrics["validate data"] = m.metrics
    mp.undo()
    return {"reports": reports, "metrics": metrics, "tmp": tmp, "full_training_report": full_report, "start": start}


def test_reports_hold_the_numbers(written: dict[str, Any]) -> None:
    r = {k: text for k, (_, text) in written["reports"].items()}
    assert "| candidate | 0.8123 | 0.7011 | 0.7516 |" in r["evaluate det"]
    assert "| off_the_shelf | 0.8123 | 0.7011 | 0.3287 |" in r["evaluate det"]
    assert "| candidate | 0.8125 | 0.9375 |" in r["evaluate rec"]
    assert "| candidate | 0.6612 | 0.5409 | 0.5950 |" in r["system eval"] and r["system eval"].count("<img ") == 6
    assert "**publish**" in r["gate"] and "| candidate | 0.5950 |" in r["gate"] and "| champion (start) | 0.1600 |" in r["gate"]
    assert "OCRFlow training report: det_finetune" in r["train"] and "<td>0.75163</td>" in r["train"]
    assert r["train"].count("<img ") == 4 and "name: ShardDataSet" in r["train"]  # curves, 3 eval pictures, config


def test_training_report_artifact_is_the_runs_report_made_to_fit(written: dict[str, Any]) -> None:
    """The run's report.html holds full-size PNGs (over the 2 MB an HTML artifact may hold); the artifact
    is the same page with each picture a JPEG of at most 800 px, everything else byte for byte."""
    full = written["full_training_report"].read_text()
    art = written["reports"]["train"][1]
    assert len(full.encode()) > _kfp_io.HTML_MAX_BYTES >= len(art.encode())
    strip = re.compile(r'src="data:image/[a-z]+;base64,[^"]+"')
    assert strip.sub("IMG", full) == strip.sub("IMG", art)
    assert len(re.findall(r'src="data:image/jpeg;base64,', art)) == 4 and "data:image/png" not in art


def test_reports_are_self_contained_and_within_ui_limits(written: dict[str, Any]) -> None:
    for name, (kind, text) in written["reports"].items():
        srcs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text, re.I)
        assert all(s.startswith("data:") for s in srcs), (name, [s[:60] for s in srcs if not s.startswith("data:")])
        assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}|@import|<link|<script|url\(", text, re.I), name
        assert not re.search(r"!\[[^\]]*\]\((?!data:)", text), name  # a Markdown image must be inlined too
        if kind == "markdown":
            assert len(text) <= _kfp_io.MARKDOWN_MAX_CHARS, name
        else:
            assert len(text.encode()) <= _kfp_io.HTML_MAX_BYTES, (name, len(text.encode()))
    images = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', written["reports"]["system eval"][1])
    import base64

    import cv2

    sizes = [cv2.imdecode(np.frombuffer(base64.b64decode(i.split(",", 1)[1]), np.uint8), 1).shape[:2] for i in images]
    assert sizes == [(450, 800)] * 6  # 1280x720 PNGs came in, 800 px JPEGs went out


def test_every_component_with_metrics_is_run(written: dict[str, Any]) -> None:
    """The fixture drives every component that has an ``Output[Metrics]``: a new one must join it."""
    with_metrics = {p.stem.replace("_", " ") for p in COMPONENTS.glob("[!_]*.py")
                    if re.search(r":\s*Output\[Metrics\]", p.read_text())}
    run = {re.sub(r" (det|rec|\(seen\))$", "", name) for name in written["metrics"]}
    assert with_metrics == run, (with_metrics, run)


def test_metric_keys_follow_one_naming(written: dict[str, Any]) -> None:
    names = "|".join(map(re.escape, _kfp_io.METRIC_NAMES))
    prefixes = "|".join(_kfp_io.MODEL_PREFIXES)
    rule = re.compile(rf"((?:{prefixes})_)?({names})")
    assert not [k for k in _kfp_io.COUNTERS if rule.fullmatch(k)]  # a counter is never also a comparison metric
    for step, values in written["metrics"].items():
        bad = [k for k in values if k not in _kfp_io.COUNTERS and not rule.fullmatch(k)]
        assert not bad, f"{step}: metric keys outside the naming of components/_kfp_io.py: {bad}"
    m = written["metrics"]
    assert {"candidate_hmean", "candidate_precision", "candidate_recall", "off_the_shelf_hmean"} <= set(m["evaluate det"])
    assert {"candidate_acc", "candidate_norm_edit_dis"} <= set(m["evaluate rec"])
    assert m["export"]["parity_passed"] == 1.0 and m["export"]["parity_max_abs_diff"] == pytest.approx(5.9e-08)
    assert {"eager_hmean", "onnx_hmean"} <= set(m["export"])
    assert m["system eval"]["candidate_hmean"] == m["gate"]["candidate_hmean"] == pytest.approx(0.595)
    assert m["gate"]["champion_hmean"] == m["system eval"]["start_hmean"] == pytest.approx(0.16)


def test_export_start_logs_the_start_models_parity(written: dict[str, Any]) -> None:
    m, start = written["metrics"]["export start"], written["start"]
    assert m == pytest.approx({"parity_max_abs_diff": 3.1e-07, "parity_passed": 1.0,
                               **{f"eager_{k}": v for k, v in START_DET.items()}})
    [out] = start["exported"]  # the content-keyed prefix under the store root, what the artifact names
    assert re.fullmatch(r"s3://ocrflow/runs/[0-9a-f]{16}/start_det-onnx", out) and start["onnx"]["uri"] == out
    # no start model (trained from scratch): an empty artifact and no metrics
    assert start["none"]["uri"] == "" and start["none"]["kind"] == "none" and start["none_metrics"] == {}


def test_check_new_data_and_validate_data_log_the_steps_numbers(written: dict[str, Any]) -> None:
    m = written["metrics"]
    assert m["check new data"] == {"is_new": 1.0} and m["check new data (seen)"] == {"is_new": 0.0}
    assert m["validate data"] == pytest.approx({  # what tiny_dataset holds
        "det_train_lines": 3.0, "det_train_bad_lines": 1.0, "det_train_boxes": 3.0,
        "det_test_lines": 1.0, "det_test_bad_lines": 0.0, "det_test_boxes": 2.0,
        "rec_train_lines": 3.0, "rec_train_bad_lines": 0.0, "rec_test_lines": 2.0, "rec_test_bad_lines": 1.0,
        "error_ratio": 2 / 9})
    assert all(isinstance(v, float) for v in m["validate data"].values())


def chromium(args: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *args], capture_output=True, text=True,
                          timeout=timeout)


def need_chromium() -> None:
    """Skip without Debian's chromium; fail instead under ``OCRFLOW_REQUIRE_BROWSER=1`` (set by .ci/run
    once it has installed it), so CI cannot pass with the rendering checks silently skipped."""
    if Path(CHROMIUM).exists():
        return
    why = f"no {CHROMIUM}: `apt-get install -y chromium` (Debian) to render the reports"
    if os.environ.get("OCRFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(why + " (OCRFLOW_REQUIRE_BROWSER=1)")
    pytest.skip(why)


def test_reports_render_in_a_headless_browser(written: dict[str, Any]) -> None:
    """Each report as the UI shows it (Markdown through a Markdown renderer, HTML as is): DOM and screenshot."""
    import cv2
    import markdown  # the dev extra's renderer of the .md reports

    need_chromium()
    out = written["tmp"] / "rendered"
    out.mkdir(exist_ok=True)
    expect = {"evaluate det": ["0.7516", "0.3287"], "evaluate rec": ["0.8125", "0.9375"],
              "system eval": ["0.5950", "0.6612"], "gate": ["0.5950", "0.1600", "publish"],
              "train": ["0.75163", "det_finetune", "ShardDataSet"]}
    for name, (kind, text) in written["reports"].items():
        page = out / (name.replace(" ", "_") + ".html")
        page.write_text(text if kind == "html" else
                        f"<!DOCTYPE html><meta charset=utf-8><body>{markdown.markdown(text, extensions=['tables'])}")
        dom = chromium(["--dump-dom", page.as_uri()])
        assert dom.returncode == 0, dom.stderr[-2000:]
        cells = re.sub(r"<[^>]+>", " ", dom.stdout)
        for number in expect[name]:
            assert number in cells, (name, number)
        if kind == "markdown":  # the tables came out as tables, not as pipes in a paragraph
            assert "<table>" in dom.stdout and "<td>0" in dom.stdout.replace(" ", ""), name
        shot = out / (name.replace(" ", "_") + ".png")
        height = 3000 if name == "train" else 800  # the training report's pictures come after its tables
        done = chromium([f"--screenshot={shot}", f"--window-size=1000,{height}", page.as_uri()])
        assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
        img = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
        ink = float((img < 128).mean())  # dark pixels: text (and pictures) on a white page
        assert img.shape == (height, 1000) and 0.001 < ink < 0.9, (name, ink)
        if name in ("system eval", "train"):  # the inlined pictures were decoded and drawn: many mid-grey pixels
            assert float(((img > 30) & (img < 225)).mean()) > 0.2
    shutil.rmtree(out)


def test_a_run_without_report_gets_a_page_saying_so(tmp_path: Path) -> None:
    from ocr_core.storage.manifest import Manifest

    page = _kfp_io.training_report(Manifest("model", "s3://ocrflow/runs/k/det_finetune", []))
    assert "s3://ocrflow/runs/k/det_finetune holds no report.html" in page and "train.log" in page
    assert _kfp_io.fit_html(page) == page and "<script" not in page and "href" not in page
