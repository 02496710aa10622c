"""The work behind each pipeline component, as plain functions that are tested on their own.

A KFP component (``components/<step>.py``) parses its typed inputs, calls ONE function here and
writes its outputs; these functions only wire ``ocr_core`` (storage, data, engine, export) and
the launcher together. Every step reads and writes object storage by URI and returns a small
manifest; big data never travels through the KFP artifact store.

Layout of a converted dataset prefix (what ``convert_labels`` publishes)::

    det/{train,test}/images/*.jpg   det/{train,test}_label.txt   (PaddleOCR det labels)
    rec/{train,test}/*.png          rec/{train,test}_label.txt   (PaddleOCR rec labels)

The raw (ingested) prefix holds the same images with ICDAR ground truth instead:
``det/<split>/gt/gt_<image>.txt`` and ``rec/<split>/gt.txt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocr_core.errors import ConfigError, DataError
from ocr_core.storage.client import open_store
from ocr_core.storage.manifest import Manifest, is_published, read_manifest, sync_down, sync_up
from ocr_core.storage.uri import StorageError, join_uri, parse_uri

log = logging.getLogger("ocrflow.pipeline")

SPLITS = ("train", "test")
DET_LABEL = "det/{split}_label.txt"
REC_LABEL = "rec/{split}_label.txt"
POINTER = "production"
DET_RECIPES = ("finetune", "cml")  # the training DAG's det_recipe values (pipelines/ocr_train_pipeline.py)


# ------------------------------------------------------------------------------------ helpers
def content_key(*parts: Any) -> str:
    """sha256 over JSON-encoded ``parts``: the run id / cache key of a step (inputs -> key)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def manifest_info(m: Manifest) -> dict[str, Any]:
    """What a step hands to the next one: URI, digest, counts and the manifest's extra."""
    return {"uri": m.prefix, "digest": m.digest(), "kind": m.kind, "counts": dict(m.counts),
            "extra": dict(m.extra)}


def scratch(name: str) -> Path:
    """A fresh local working directory for one step."""
    root = os.environ.get("OCRFLOW_WORK_DIR") or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"ocrflow-{name}-", dir=root))


REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_config(config: str) -> str:
    """A config path as given when it exists, else relative to the source tree (or image workdir)."""
    for cand in (Path(config), REPO_ROOT / config, Path("/opt/ocrflow") / config):
        if cand.is_file():
            return str(cand.resolve())
    raise DataError(f"config file not found: {config} (looked in ., {REPO_ROOT}, /opt/ocrflow)")


def config_digest(config: str, overrides: Sequence[str] = ()) -> str:
    """Hash of the resolved config (file + overrides), as ``ocr_core.config.config_hash``."""
    from ocr_core.config import config_hash, load_config

    return config_hash(load_config(resolve_config(config), list(overrides)))


def checkpoint_uri(info: Mapping[str, Any]) -> str:
    """The checkpoint inside a model prefix (``extra.checkpoint``, default ``model.pt``)."""
    return join_uri(info["uri"], str(info.get("extra", {}).get("checkpoint") or "model.pt"))


def fetch_checkpoint(model_uri: str, dest: Path) -> Path:
    """Download a model prefix and return the local path of its checkpoint."""
    m = sync_down(model_uri, dest, quiet=True)
    return dest / str(m.extra.get("checkpoint") or "model.pt")


def check_det_recipe(det_recipe: str, det_teacher_init_uri: str = "") -> None:
    """Fail fast on a detection recipe the DAG cannot run (before any data is moved or trained).

    ``cml`` trains a DML teacher first; it needs weights to start from (``det_teacher_init_uri``):
    an extracted DML teacher, an official distillation checkpoint or ImageNet backbones.
    """
    if det_recipe not in DET_RECIPES:
        raise ConfigError(f"det_recipe must be one of {', '.join(DET_RECIPES)}, got {det_recipe!r}")
    if det_recipe == "cml" and not det_teacher_init_uri:
        raise ConfigError("det_recipe=cml needs det_teacher_init_uri: a model prefix (model.pt) that initialises "
                          "the DML teacher's roles (an extracted DML teacher, the official distillation weights "
                          "converted with `ocrflow weights import-paddle`, or ImageNet backbones); "
                          "or use det_recipe=finetune")


# ------------------------------------------------------------------------------- data steps
def ingest(raw_uri: str, store_root: str) -> Manifest:
    """A published raw prefix as is; a local directory is published under ``<root>/raw/<digest>``."""
    if is_published(raw_uri):
        return read_manifest(raw_uri)
    if parse_uri(raw_uri).is_local and Path(parse_uri(raw_uri).key).is_dir():
        local = Path(parse_uri(raw_uri).key)
        digest = content_key(sorted(str(p.relative_to(local)) + str(p.stat().st_size)
                                    for p in local.rglob("*") if p.is_file()))
        return sync_up(local, join_uri(store_root, "raw", digest[:16]), kind="raw-dataset", quiet=True,
                       extra={"source": raw_uri})
    raise DataError(f"{raw_uri}: not a published dataset (no manifest.json) and not a local directory")


def convert_labels(raw_uri: str, out_uri: str) -> Manifest:
    """ICDAR ground truth of every split -> PaddleOCR label files; publish images + labels."""
    from ocr_core.data.icdar import convert_det_gt_dir, convert_rec_gt

    work = scratch("convert")
    raw = sync_down(raw_uri, work, quiet=True)
    counts: dict[str, int] = {}
    for split in SPLITS:
        det = work / "det" / split
        if (det / "gt").is_dir():
            st = convert_det_gt_dir(str(det / "gt"), str(det / "images"), str(work / DET_LABEL.format(split=split)),
                                    image_prefix=f"det/{split}/images")
            counts[f"det_{split}_images"], counts[f"det_{split}_boxes"] = st.files, st.boxes
        rec = work / "rec" / split
        if (rec / "gt.txt").is_file():
            st = convert_rec_gt(str(rec / "gt.txt"), str(work / REC_LABEL.format(split=split)),
                                image_prefix=f"rec/{split}")
            counts[f"rec_{split}_words"] = st.lines
    if not counts:
        raise DataError(f"{raw_uri}: no det/<split>/gt/ or rec/<split>/gt.txt ground truth found")
    (work / "manifest.json").unlink(missing_ok=True)
    m = sync_up(work, out_uri, kind="dataset", counts=counts, quiet=True,
                extra={"source": raw_uri, "source_digest": raw.digest(), "layout": "ocrflow-v1"})
    shutil.rmtree(work, ignore_errors=True)
    return m


def validate_dataset(dataset_uri: str, max_error_ratio: float = 0.0) -> dict[str, float]:
    """Validate every label file; raise ``DataError`` when errors exceed ``max_error_ratio``."""
    from ocr_core.data.validate import validate_labels

    work = scratch("validate")
    sync_down(dataset_uri, work, quiet=True)
    stats: dict[str, float] = {}
    lines = errors = 0
    first: list[str] = []
    for mode, pattern in (("det", DET_LABEL), ("rec", REC_LABEL)):
        for split in SPLITS:
            label = work / pattern.format(split=split)
            if not label.is_file():
                continue
            rep = validate_labels(str(label), str(work), mode, max_text_length=None, progress=False)
            tag = f"{mode}_{split}"
            stats[f"{tag}_lines"] = rep.stats.lines
            stats[f"{tag}_bad_lines"] = rep.stats.bad_lines
            if mode == "det":
                stats[f"{tag}_boxes"] = rep.stats.boxes
            lines += rep.stats.lines
            errors += rep.stats.bad_lines
            first += [str(e) for e in rep.errors[:3]]
    shutil.rmtree(work, ignore_errors=True)
    stats["error_ratio"] = errors / lines if lines else 1.0
    if not lines or stats["error_ratio"] > max_error_ratio:
        raise DataError(f"{dataset_uri}: {errors}/{lines} bad label lines (ratio {stats['error_ratio']:.3f} > "
                        f"max_error_ratio {max_error_ratio}); first: " + " | ".join(first[:5]))
    return stats


def build_rec_lmdb(dataset_uri: str, out_uri: str) -> Manifest:
    """Recognition LMDBs ``train/`` and ``test/`` from the dataset's rec label files.

    ``out_uri`` derives from the (content-keyed) dataset prefix: a published one is reused. LMDB
    files are not byte-reproducible, so rebuilding would change the digest and, with it, the
    content keys of rec training and the start rec export downstream.
    """
    from ocr_core.data.lmdb_build import build_lmdb

    source_digest = read_manifest(dataset_uri).digest()
    if is_published(out_uri) and read_manifest(out_uri).extra.get("source_digest") == source_digest:
        log.info("reusing the LMDBs at %s (built from dataset %s)", out_uri, source_digest[:12])
        return read_manifest(out_uri)
    work = scratch("lmdb")
    sync_down(dataset_uri, work / "src", quiet=True)
    counts = {}
    for split in SPLITS:
        label = work / "src" / REC_LABEL.format(split=split)
        if label.is_file():
            st = build_lmdb(str(label), str(work / "src"), str(work / "out" / split), progress=False)
            counts[f"{split}_samples"] = st.samples
    if "train_samples" not in counts:
        raise DataError(f"{dataset_uri}: no {REC_LABEL.format(split='train')}")
    m = sync_up(work / "out", out_uri, kind="lmdb-dataset", counts=counts, quiet=True,
                extra={"source": dataset_uri, "source_digest": source_digest})
    shutil.rmtree(work, ignore_errors=True)
    return m


# ------------------------------------------------------------------------------ model steps
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


def data_overrides(model_type: str, data_dir: str) -> list[str]:
    """Point a config's Train/Eval datasets at a staged dataset (det labels or rec LMDBs)."""
    if model_type == "det":
        return [f"Train.dataset.data_dir={data_dir}",
                f"Train.dataset.label_file_list=[{data_dir}/{DET_LABEL.format(split='train')}]",
                f"Eval.dataset.data_dir={data_dir}",
                f"Eval.dataset.label_file_list=[{data_dir}/{DET_LABEL.format(split='test')}]"]
    return [f"Train.dataset.data_dir={data_dir}/train", f"Eval.dataset.data_dir={data_dir}/test"]


def on_staged_data(cfg: dict[str, Any], model_type: str) -> dict[str, Any]:
    """Make a checkpoint's own config read the staged dataset (after :func:`data_overrides`).

    Staged rec data is LMDB; a model trained elsewhere (the imported off-the-shelf PP-OCRv3 rec,
    a production model from another pipeline version) may carry a ``SimpleDataSet`` section whose
    label files do not exist here. Its transforms are kept: they belong to the model.
    """
    if model_type != "rec":
        return cfg
    for split in ("Train", "Eval"):
        ds = (cfg.get(split) or {}).get("dataset")
        if isinstance(ds, dict) and ds.get("name") != "LMDBDataSet":
            cfg[split]["dataset"] = {"name": "LMDBDataSet", "data_dir": ds.get("data_dir", ""),
                                     "transforms": ds.get("transforms")}
    return cfg


# Eval/export steps evaluate several models (or eager, then ONNX) in one process: DataLoader workers
# forked after the first evaluation started OpenCV's thread pool can hang in cv2 calls (a fork after
# threads). Workers 0 by default here; ``*_eval_overrides`` may set ``Eval.loader.num_workers`` back.
EVAL_LOADER = ["Eval.loader.num_workers=0"]


def evaluate_models(model_type: str, dataset_uri: str, models: Mapping[str, str],
                    overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Evaluate each model prefix (label -> URI) on the same Eval set; configs come from the checkpoints."""
    from ocr_core.config import load_config
    from ocr_core.config.loader import public_config
    from ocr_core.engine.checkpoint import load_checkpoint
    from ocr_core.engine.program import evaluate_config

    work = scratch("eval")
    sync_down(dataset_uri, work / "data", quiet=True)
    out: dict[str, dict[str, float]] = {}
    for label, uri in models.items():
        if not uri:
            continue
        ckpt = fetch_checkpoint(uri, work / label)
        base = public_config(load_checkpoint(ckpt)["config"])
        cfg = load_config(None, [*data_overrides(model_type, str(work / "data")), *EVAL_LOADER, *overrides,
                                 f"Global.checkpoints={ckpt}", f"Global.save_model_dir={work / 'logs'}",
                                 "Global.use_gpu=false"], base=base)
        on_staged_data(cfg, model_type)
        cfg["Global"].pop("pretrained_model", None)
        out[label] = {k: float(v) for k, v in evaluate_config(cfg).items()}
    shutil.rmtree(work, ignore_errors=True)
    return out


def export_model(model_type: str, model_uri: str, dataset_uri: str, out_uri: str,
                 overrides: Sequence[str] = (), atol: float = 1e-3, metric_tol: float = 0.5) -> Manifest:
    """ONNX export + the parity gate (tensors and the Eval metric, eager vs onnxruntime)."""
    from ocr_core.config import load_config
    from ocr_core.config.loader import public_config
    from ocr_core.engine.checkpoint import load_checkpoint
    from ocr_core.export.onnx_export import export_onnx
    from ocr_core.export.parity import check_parity

    work = scratch("export")
    sync_down(dataset_uri, work / "data", quiet=True)
    ckpt = fetch_checkpoint(model_uri, work / "ckpt")
    base = public_config(load_checkpoint(ckpt)["config"])
    cfg = load_config(None, [*data_overrides(model_type, str(work / "data")), *EVAL_LOADER, *overrides,
                             f"Global.checkpoints={ckpt}", "Global.use_gpu=false"], base=base)
    on_staged_data(cfg, model_type)
    cfg["Global"].pop("pretrained_model", None)
    res = export_onnx(cfg, work / "out", checkpoint=str(ckpt))
    rep = check_parity(cfg, res.onnx_path, atol=atol, metric_tol=metric_tol)  # raises ParityError
    shutil.copy2(ckpt, work / "out" / "model.pt")
    parity = {"max_abs": float(rep.max_abs), "metric": rep.metric_name, "eager": rep.eager_metric,
              "onnx": rep.onnx_metric, "passed": rep.passed}
    m = sync_up(work / "out", out_uri, kind="onnx-model", quiet=True,
                extra={"checkpoint": "model.pt", "onnx": res.onnx_path.name, "model_type": model_type,
                       "source": model_uri, "parity": parity})
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


# ------------------------------------------------------------------------- gate and publish
def production_pointer(registry_uri: str, name: str) -> dict[str, Any] | None:
    """The ``models/<name>/production`` pointer object, or None when nothing is in production."""
    store = open_store(registry_uri)
    uri = join_uri(registry_uri, "models", name, POINTER)
    try:
        return json.loads(store.get_bytes(uri))
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "NotFound", "NoSuchBucket"):
            return None
        raise


def publish(models: Mapping[str, str], registry_uri: str, name: str, version: str,
            metrics: Mapping[str, Any], data: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Copy each model prefix to ``models/<name>/<version>/<part>/``, then move the pointer.

    ``data`` (``{"uri", "digest"}`` of the raw dataset manifest the models were trained on) is
    recorded in the pointer: ``check_new_data`` compares incoming data against it.
    """
    work = scratch("publish")
    parts = {}
    for part, uri in models.items():
        sync_down(uri, work / part, quiet=True)
        (work / part / "manifest.json").unlink(missing_ok=True)
        m = sync_up(work / part, join_uri(registry_uri, "models", name, version, part), kind="published-model",
                    quiet=True, extra={**read_manifest(uri).extra, "source": uri})
        parts[part] = {"uri": m.prefix, "digest": m.digest()}
    pointer = {"name": name, "version": version, "parts": parts, "metrics": dict(metrics)}
    if data:
        pointer[DATA_KEY] = {"uri": str(data.get("uri", "")), "digest": str(data["digest"])}
    open_store(registry_uri).put_bytes(json.dumps(pointer, indent=1).encode(),
                                       join_uri(registry_uri, "models", name, POINTER), "application/json")
    shutil.rmtree(work, ignore_errors=True)
    return pointer


# ------------------------------------------------------------------- scheduled retraining
DATA_KEY = "data"  # pointer field: {"uri", "digest"} of the raw dataset the production model was trained on


def dataset_digest(raw_uri: str) -> str:
    """Manifest digest of a raw dataset: its published manifest, or (a local directory) the
    digest ``ingest`` would publish it with (same file selection and hashing), without uploading."""
    from ocr_core.storage.client import sha256_file
    from ocr_core.storage.manifest import FileEntry, _local_files

    if is_published(raw_uri):
        return read_manifest(raw_uri).digest()
    uri = parse_uri(raw_uri)
    if uri.is_local and Path(uri.key).is_dir():
        files = [FileEntry(rel, p.stat().st_size, sha256_file(p)) for rel, p in _local_files(Path(uri.key))]
        return Manifest(kind="raw-dataset", prefix=raw_uri, files=files).digest()
    raise DataError(f"{raw_uri}: not a published dataset (no manifest.json) and not a local directory")


def production_data_digest(pointer: Mapping[str, Any] | None) -> str:
    """The dataset digest recorded in a production pointer ("" when none is recorded)."""
    return str(((pointer or {}).get(DATA_KEY) or {}).get("digest") or "")


def new_data_decision(incoming: str, pointer: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Retrain when there is no production model, it records no dataset digest, or the digest differs."""
    if pointer is None:
        return True, f"no production model: new data {incoming[:12]}"
    recorded = production_data_digest(pointer)
    if not recorded:
        return True, f"production {pointer.get('version')} records no dataset digest: treat {incoming[:12]} as new"
    if recorded == incoming:
        return False, f"dataset {incoming[:12]} is what production {pointer.get('version')} was trained on: skip"
    return True, f"dataset {incoming[:12]} differs from production {pointer.get('version')}'s {recorded[:12]}: retrain"


def pointer_fingerprint(pointer: Mapping[str, Any] | None) -> str:
    """Identifies one write of the pointer (``publish`` rewrites it): "" when there is none."""
    return content_key(dict(pointer)) if pointer is not None else ""


def check_new_data(raw_uri: str, registry_uri: str, name: str) -> dict[str, Any]:
    """Compare ``raw_uri``'s manifest digest with the one recorded beside the production model."""
    incoming = dataset_digest(raw_uri)
    pointer = production_pointer(registry_uri, name)
    is_new, why = new_data_decision(incoming, pointer)
    log.info("%s", why)
    return {"is_new": is_new, "reason": why, "incoming_digest": incoming,
            "production_digest": production_data_digest(pointer),
            "production_version": str((pointer or {}).get("version") or ""),
            "pointer_fingerprint": pointer_fingerprint(pointer)}


def record_trained_data(registry_uri: str, name: str, data_uri: str, data_digest: str,
                        seen_fingerprint: str) -> bool:
    """After a retraining run: when the pointer is not the one ``check_new_data`` saw (this run
    published), record the dataset it was trained on in it. False when the gate kept the champion."""
    pointer = production_pointer(registry_uri, name)
    if pointer is None or pointer_fingerprint(pointer) == seen_fingerprint:
        log.info("production pointer unchanged: nothing published by this run")
        return False
    pointer[DATA_KEY] = {"uri": data_uri, "digest": data_digest}
    open_store(registry_uri).put_bytes(json.dumps(pointer, indent=1).encode(),
                                       join_uri(registry_uri, "models", name, POINTER), "application/json")
    log.info("production %s: recorded dataset %s", pointer.get("version"), data_digest[:12])
    return True
