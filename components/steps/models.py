"""Model steps: extract a distillation role, evaluate, export to ONNX behind the parity gate, export
the run's start models, adopt a published model; the end-to-end (det+rec) system eval and the
pictures of two detectors side by side.

Every model is a published prefix holding a checkpoint (``extra.checkpoint``, default ``model.pt``)
or, exported, an ONNX file (``extra.onnx``) and, with a TensorRT format, the engine
(``extra.engine``). Configs come from the checkpoints themselves, pointed at the staged Eval data.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.steps.common import content_key, fetch_checkpoint, layered_config, log, scratch
from components.steps.data import DET_LABEL, data_settings
from ocr_core.storage.manifest import Manifest, is_published, read_manifest, sync_down, sync_up
from ocr_core.storage.uri import join_uri

# Eval/export steps evaluate several models (or eager, then ONNX) in one process: DataLoader workers
# forked after the first evaluation started OpenCV's thread pool can hang in cv2 calls (a fork after
# threads). Workers 0 by default here; ``*_eval_overrides`` may set ``Eval.loader.num_workers`` back.
EVAL_LOADER = {"Eval.loader.num_workers": 0}


def adopt_model(uri: str) -> Manifest:
    """A published model prefix as this run's model (its manifest is the source of truth)."""
    return read_manifest(uri)


def extract(model_uri: str, role: str, out_uri: str) -> Manifest:
    """One role of a distillation checkpoint as a plain checkpoint prefix (``model.pt``)."""
    from ocr_core.engine.extract import extract_role

    work = scratch("extract")
    src = fetch_checkpoint(model_uri, work / "src")
    res = extract_role(src, role, work / "out" / "model.pt", evaluate=False)
    m = sync_up(work / "out", out_uri, kind="model", quiet=True,
                extra={"checkpoint": "model.pt", "role": role, "source": model_uri,
                       "recorded": res.recorded})
    shutil.rmtree(work, ignore_errors=True)
    return m


def on_staged_data(cfg: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Make a checkpoint's own config read the staged dataset (after :func:`~components.steps.data.data_settings`).

    Staged rec data is LMDB; a model trained elsewhere (the imported off-the-shelf PP-OCRv3 rec,
    a production model from another pipeline version) may carry a ``SimpleDataSet`` section whose
    label files do not exist here. Its transforms are kept: they belong to the model. A det model
    trained on shards carries ``ShardDataSet`` keys (``cache_size``, ``shuffle_buffer``, ...) that the
    staged ``SimpleDataSet`` does not take: each section keeps only the keys its dataset accepts.
    """
    import inspect

    from ocr_core.data.lmdb_dataset import LMDBDataSet
    from ocr_core.data.simple_dataset import SimpleDataSet

    staged = LMDBDataSet if model_type == "rec" else SimpleDataSet
    params = inspect.signature(staged.__init__).parameters.values()
    accepted = {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}
    for split in ("Train", "Eval"):
        ds = (cfg.get(split) or {}).get("dataset")
        if not isinstance(ds, dict):
            continue
        if model_type == "rec" and ds.get("name") != "LMDBDataSet":
            ds = {"name": "LMDBDataSet", "data_dir": ds.get("data_dir", ""), "transforms": ds.get("transforms")}
        cfg[split]["dataset"] = {k: v for k, v in ds.items() if k == "name" or k in accepted}
    return cfg


def checkpoint_config(ckpt: Path, model_type: str, data_dir: Path, overrides: Sequence[str] = (),
                      loaded: Mapping[str, Any] | None = None, **global_settings: Any) -> dict[str, Any]:
    """The config a checkpoint was trained with, reading the dataset staged at ``data_dir``.

    Layers, the last winning: the checkpoint's own config, the staged data and :data:`EVAL_LOADER`,
    the user's ``overrides`` (``-o`` strings), then ``Global.checkpoints`` = ``ckpt``,
    ``global_settings`` (``Global.<key>``) and ``Global.use_gpu`` false. ``Global.pretrained_model``
    is dropped: the weights are the checkpoint's. ``loaded``: ``ckpt`` already read (not read again).
    """
    from ocr_core.config.loader import public_config
    from ocr_core.weights.checkpoint import load_checkpoint

    base = public_config((loaded if loaded is not None else load_checkpoint(ckpt))["config"])
    cfg = layered_config(base, {**data_settings(model_type, data_dir), **EVAL_LOADER}, overrides,
                         {"Global.checkpoints": str(ckpt), **{f"Global.{k}": v for k, v in global_settings.items()},
                          "Global.use_gpu": False})
    on_staged_data(cfg, model_type)
    cfg["Global"].pop("pretrained_model", None)
    return cfg


def evaluate_models(model_type: str, dataset_uri: str, models: Mapping[str, str],
                    overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Evaluate each model prefix (label -> URI) on the same Eval set; configs come from the checkpoints."""
    from ocr_core.engine.run import evaluate_config

    work = scratch("eval")
    sync_down(dataset_uri, work / "data", quiet=True)
    out: dict[str, dict[str, float]] = {}
    for label, uri in models.items():
        if not uri:
            continue
        cfg = checkpoint_config(fetch_checkpoint(uri, work / label), model_type, work / "data", overrides,
                                save_model_dir=str(work / "logs"))
        out[label] = {k: float(v) for k, v in evaluate_config(cfg).items()}
    shutil.rmtree(work, ignore_errors=True)
    return out


def export_model(model_type: str, model_uri: str, dataset_uri: str, out_uri: str,
                 overrides: Sequence[str] = (), atol: float = 1e-3, metric_tol: float = 0.5,
                 fmt: str = "onnx") -> Manifest:
    """ONNX export + the parity gate (tensors and the Eval metric, eager vs onnxruntime); with ``fmt``
    ``tensorrt``/``both`` also a TensorRT engine behind its gate (engine vs onnxruntime, same checks).

    The export and the gates are ``ocrflow export --check``'s own call (``export_checked``); this step
    adds the checkpoint download, the staged Eval data and the publication of ``model.onnx`` +
    ``model.pt`` (+ ``model.engine``) under ``out_uri``. The checkpoint is read once (its config and
    its weights). A TensorRT format without a GPU/TensorRT fails before anything is downloaded:
    ONNX alone is never published when an engine was asked for.
    """
    from ocr_core.export.checked import export_checked, needs_tensorrt
    from ocr_core.export.tensorrt_build import require_tensorrt
    from ocr_core.weights.checkpoint import load_checkpoint

    if needs_tensorrt(fmt):  # (an unknown format is a ConfigError here)
        require_tensorrt()
    work = scratch("export")
    sync_down(dataset_uri, work / "data", quiet=True)
    ckpt = fetch_checkpoint(model_uri, work / "ckpt")
    loaded = load_checkpoint(ckpt)
    cfg = checkpoint_config(ckpt, model_type, work / "data", overrides, loaded=loaded)
    checked = export_checked(cfg, work / "out", checkpoint=str(ckpt), atol=atol, metric_tol=metric_tol,
                             loaded=loaded, fmt=fmt)  # raises ParityError
    res, rep = checked.result, checked.parity
    assert rep is not None
    shutil.copy2(ckpt, work / "out" / "model.pt")
    parity = {"max_abs": float(rep.max_abs), "metric": rep.metric_name, "eager": rep.eager_metric,
              "onnx": rep.onnx_metric, "passed": rep.passed}
    extra: dict[str, Any] = {"checkpoint": "model.pt", "onnx": res.onnx_path.name, "model_type": model_type,
                             "source": model_uri, "format": fmt, "parity": parity}
    if checked.engine is not None:
        trt = checked.tensorrt_parity
        assert trt is not None
        extra["engine"] = checked.engine.name
        extra["tensorrt_parity"] = {"max_abs": float(trt.max_abs), "atol": trt.atol, "metric": trt.metric_name,
                                    "onnx": trt.onnx_metric, "tensorrt": trt.tensorrt_metric,
                                    "metric_skipped": trt.metric_skipped, "passed": trt.passed}
    m = sync_up(work / "out", out_uri, kind="onnx-model", quiet=True, extra=extra)
    shutil.rmtree(work, ignore_errors=True)
    return m


def export_start_model(model_type: str, start_uri: str, dataset_uri: str, store_root: str,
                       overrides: Sequence[str] = (), atol: float = 1e-3) -> Manifest | None:
    """The start model (``det_pretrained_uri`` / ``rec_pretrained_uri``) through :func:`export_model`.

    The gate's champion when nothing is in production is the model the run started from, so it is
    exported and system-evaluated by the same code as the candidate. The output prefix is
    content-keyed (start model, dataset, eval overrides, tolerance): a re-run reuses it.
    None when there is no start model (training from scratch).
    """
    if not start_uri:
        return None
    key = content_key("start-export", model_type, read_manifest(start_uri).digest(), read_manifest(dataset_uri).digest(),
                      sorted(overrides), atol)
    out_uri = join_uri(store_root, "runs", key[:16], f"start_{model_type}-onnx")
    if is_published(out_uri):
        log.info("start %s: reusing the export at %s", model_type, out_uri)
        return read_manifest(out_uri)
    return export_model(model_type, start_uri, dataset_uri, out_uri, overrides, atol=atol)


# ----------------------------------------------------------------- end-to-end system eval
def fetch_onnx(model_uri: str, dest: Path) -> Path:
    """Download an exported model prefix; the local path of its ONNX file."""
    m = sync_down(model_uri, dest, quiet=True)
    return dest / str(m.extra.get("onnx", "model.onnx"))


def _ground_truth(label: str) -> list[tuple[list[list[float]], str]]:
    from ocr_core.data.label_io import parse_det_label

    return [(b.points, b.transcription) for b in parse_det_label(label)]


def system_eval(det_onnx: str | Path, rec_onnx: str | Path, label_file: str | Path, data_dir: str | Path,
                drop_score: float = 0.0) -> dict[str, float]:
    """Run ``TextSystem`` (exported det + rec, onnxruntime) on every image of a det label file and
    score it end to end (``ocr_core.metrics.e2e_metric``: P/R/H, images, GT boxes, predictions)."""
    from ocr_core.data import image_io
    from ocr_core.data.label_io import read_label_lines, split_label_line
    from ocr_core.inference.predictors import DetPredictor, RecPredictor, TextSystem
    from ocr_core.metrics.e2e_metric import E2EMetric

    system = TextSystem(DetPredictor(det_onnx), RecPredictor(rec_onnx), drop_score=drop_score)
    metric = E2EMetric()
    for _, line in read_label_lines(str(label_file)):
        if not line:
            continue
        paths, label = split_label_line(line)
        try:  # the header first: a decompression bomb is never decoded
            img = image_io.read(Path(data_dir) / paths[0])
        except (image_io.ImageTooLarge, OSError) as exc:
            log.warning("system eval: %s (scored as a miss)", exc)
            img = None
        # unreadable: scored as a miss (every model evaluated here gets the same images), never skipped
        metric.update(system(img) if img is not None else [], _ground_truth(label))
    return metric.get_metric()


def system_eval_uris(det_uri: str, rec_uri: str, dataset_uri: str) -> dict[str, float]:
    """:func:`system_eval` on exported model prefixes and a dataset prefix (staged locally)."""
    work = scratch("system-eval")
    sync_down(dataset_uri, work / "data", quiet=True)
    out = system_eval(fetch_onnx(det_uri, work / "det"), fetch_onnx(rec_uri, work / "rec"),
                      work / "data" / DET_LABEL.format(split="test"), work / "data")
    shutil.rmtree(work, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------ pictures
GREEN, RED, BLUE, GREY = (40, 160, 40), (30, 30, 220), (200, 90, 20), (150, 150, 150)


def draw_detections(img: Any, polys: Sequence[Any], gts: list[tuple[list[list[float]], str]],
                    iou: float = 0.5) -> tuple[Any, dict[str, int]]:
    """``img`` with det boxes drawn (green matched, red false positive, blue missed GT, grey
    don't care) and the counts ``{"matched", "false_pos", "missed", "gt"}``."""
    import cv2
    import numpy as np

    from ocr_core.metrics.e2e_metric import DONT_CARE, polygon_iou

    vis = img.copy()
    used: set[int] = set()
    colors = []
    for p in polys:
        best, best_iou = -1, iou
        for i, (poly, _) in enumerate(gts):
            if i not in used and (v := polygon_iou(p, poly)) >= best_iou:
                best, best_iou = i, v
        if best >= 0:
            used.add(best)
        colors.append(GREY if best >= 0 and gts[best][1] == DONT_CARE else GREEN if best >= 0 else RED)
    counts = {"matched": colors.count(GREEN), "false_pos": colors.count(RED),
              "missed": sum(1 for i, (_, t) in enumerate(gts) if i not in used and t != DONT_CARE),
              "gt": sum(t != DONT_CARE for _, t in gts)}
    for i, (poly, text) in enumerate(gts):
        if i not in used:
            cv2.polylines(vis, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], True,
                          GREY if text == DONT_CARE else BLUE, 1, cv2.LINE_AA)
    for p, c in zip(polys, colors):
        cv2.polylines(vis, [np.asarray(p, np.int32).reshape(-1, 1, 2)], True, c, 2, cv2.LINE_AA)
    return vis, counts


def detection_pairs(det_a: str | Path, det_b: str | Path, label_file: str | Path, data_dir: str | Path,
                    n: int = 3, scale: float = 1.0) -> list[dict[str, Any]]:
    """The first ``n`` images of a det label file through two exported det models, drawn
    (:func:`draw_detections`; ``scale`` enlarges the picture, not what the models see).

    Returns one dict per image: ``{"image", "a": png bytes, "b": png bytes, "a_counts", "b_counts"}``.
    """
    import cv2
    import numpy as np

    from ocr_core.data import image_io
    from ocr_core.data.label_io import parse_det_label, read_label_lines, split_label_line
    from ocr_core.inference.predictors import DetPredictor

    models = {"a": DetPredictor(det_a), "b": DetPredictor(det_b)}
    out: list[dict[str, Any]] = []
    for _, line in read_label_lines(str(label_file)):
        if not line or len(out) >= n:
            continue
        paths, label = split_label_line(line)
        try:  # the header first: a decompression bomb is never decoded
            img = image_io.read(Path(data_dir) / paths[0])
        except (image_io.ImageTooLarge, OSError):
            img = None
        if img is None:  # a visual sample only: an unreadable image is left out
            continue
        big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1.0 else img
        gts = [((np.asarray(b.points, np.float64) * scale).tolist(), b.transcription) for b in parse_det_label(label)]
        item: dict[str, Any] = {"image": paths[0]}
        for k, det in models.items():
            polys = [np.asarray(p, np.float64) * scale for p in det(img)["points"]]
            vis, counts = draw_detections(big, polys, gts)
            item[k], item[f"{k}_counts"] = cv2.imencode(".png", vis)[1].tobytes(), counts
        out.append(item)
    return out
