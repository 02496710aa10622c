"""Data steps: ingest raw labelled data, convert its labels, validate them, build the rec LMDBs and the
shard sets; the dataset digest and the retrain DAG's "is this data new?" check.

Layout of a converted dataset prefix (what :func:`convert_labels` publishes)::

    det/{train,test}/images/*.jpg   det/{train,test}_label.txt   (PaddleOCR det labels)
    rec/{train,test}/*.png          rec/{train,test}_label.txt   (PaddleOCR rec labels)

The raw (ingested) prefix holds the same images with ICDAR ground truth instead:
``det/<split>/gt/gt_<image>.txt`` and ``rec/<split>/gt.txt``. The rec LMDB prefix holds
``train/`` and ``test/``; the shards prefix (``data_format=shards``) one shard set per label file,
``{det,rec}/{train,test}/`` (shard tars + their index ``manifest.json``, docs/data.md "Shards").
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.steps.common import content_key, log, scratch
from components.steps.registry import pointer_fingerprint, production_data_digest, production_pointer
from ocr_core.errors import ConfigError, DataError
from ocr_core.storage.manifest import (
    FileEntry,
    Manifest,
    is_published,
    read_manifest,
    sync_down,
    sync_up,
    write_manifest,
)
from ocr_core.storage.uri import join_uri, parse_uri

SPLITS = ("train", "test")
DET_LABEL = "det/{split}_label.txt"
REC_LABEL = "rec/{split}_label.txt"
DATA_FORMATS = ("files", "shards")  # the training DAG's data_format values (pipelines/ocr_train_pipeline.py)
SHARDS_KIND = "shard-sets"
EVAL_SPLIT = {"Train": "train", "Eval": "test"}  # the config section -> the split it reads


def data_settings(model_type: str, data_dir: str | Path) -> dict[str, Any]:
    """The config values that make Train/Eval read a dataset staged at ``data_dir`` (dotted key ->
    value): det label files + images (``SimpleDataSet``: a det model trained on shards carries
    ``ShardDataSet`` sections into eval and export), or the rec LMDBs ``train/`` and ``test/``
    (``components.steps.models.on_staged_data`` turns a rec section of another dataset into an LMDB one)."""
    d = str(data_dir)
    if model_type == "det":
        return {"Train.dataset.name": "SimpleDataSet", "Train.dataset.data_dir": d,
                "Train.dataset.label_file_list": [f"{d}/{DET_LABEL.format(split='train')}"],
                "Eval.dataset.name": "SimpleDataSet", "Eval.dataset.data_dir": d,
                "Eval.dataset.label_file_list": [f"{d}/{DET_LABEL.format(split='test')}"]}
    return {"Train.dataset.data_dir": f"{d}/train", "Eval.dataset.data_dir": f"{d}/test"}


def shard_dataset_config(cfg: dict[str, Any], model_type: str, shards_uri: str) -> dict[str, Any]:
    """Make ``Train``/``Eval`` of ``cfg`` stream the shard sets ``<shards_uri>/<model_type>/{train,test}``.

    Each ``dataset`` section becomes a ``ShardDataSet`` (``data_dir`` the set's URI) that keeps the
    keys ShardDataSet also takes (``transforms``, ``ext_op_transform_idx``, ``seed``, ...) and drops
    those of a file or LMDB dataset (``label_file_list``, ``ratio_list``, ``delimiter``). Changes
    ``cfg`` in place and returns it.
    """
    from ocr_core.data.shards import ShardDataSet

    params = inspect.signature(ShardDataSet.__init__).parameters.values()
    accepted = {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self", "data_dir"}
    for section, split in EVAL_SPLIT.items():
        dataset = (cfg.get(section) or {}).get("dataset")
        if dataset is None:
            continue
        kept = {k: v for k, v in dataset.items() if k in accepted}
        cfg[section]["dataset"] = {"name": "ShardDataSet", "data_dir": join_uri(shards_uri, model_type, split), **kept}
    return cfg


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


def check_data_format(data_format: str) -> None:
    """``files`` (stage the dataset into each training node) or ``shards`` (stream shard sets)."""
    if data_format not in DATA_FORMATS:
        raise ConfigError(f"data_format must be one of {', '.join(DATA_FORMATS)}, got {data_format!r}")


def build_dataset_shards(dataset_uri: str, out_uri: str, shard_size: str = "256MB") -> Manifest:
    """One shard set per label file of the dataset (``det``/``rec`` x ``train``/``test``) under ``out_uri``.

    Each set is what ``ocrflow build-shards`` writes (its own index ``manifest.json``) at
    ``<out_uri>/<mode>/<split>``; the manifest of ``out_uri`` (``kind: shard-sets``) lists every
    shard, so its digest is the content of all sets, and records each set in ``extra.sets``. Shards
    are byte-reproducible (the label files are read by their path in the dataset, so each sample's
    ``source`` is ``det/train_label.txt:<line>``); a published prefix built from the same dataset
    digest with the same shard size is reused.
    """
    from ocr_core.data.shard_format import FORMAT, build_shards, read_index
    from ocr_core.storage.client import open_store

    source_digest = read_manifest(dataset_uri).digest()
    if is_published(out_uri):
        old = read_manifest(out_uri)
        if old.kind == SHARDS_KIND and old.extra.get("source_digest") == source_digest \
                and old.extra.get("shard_size") == shard_size:
            log.info("reusing the shards at %s (built from dataset %s)", out_uri, source_digest[:12])
            return old
    store = open_store(out_uri)
    store.delete(join_uri(out_uri, "manifest.json"))  # unpublished while the sets change
    work = scratch("shards")
    sync_down(dataset_uri, work / "src", quiet=True)
    files: list[FileEntry] = []
    counts: dict[str, int] = {}
    sets: dict[str, dict[str, Any]] = {}
    try:
        for mode, pattern in (("det", DET_LABEL), ("rec", REC_LABEL)):
            for split in SPLITS:
                label = pattern.format(split=split)
                if not (work / "src" / label).is_file():
                    continue
                name, set_uri = f"{mode}/{split}", join_uri(out_uri, mode, split)
                if not is_published(set_uri):  # an earlier attempt's partial shards: build_shards refuses them
                    store.delete(set_uri, recursive=True)
                with contextlib.chdir(work / "src"):  # relative label path: reproducible ``source`` fields
                    stats = build_shards([label], ".", set_uri, mode, shard_size, overwrite=True, quiet=True)
                index = read_index(set_uri, store)
                files += [FileEntry(f"{name}/{n}", size, sha)
                          for n, size, sha in zip(index.names, index.sizes, index.sha256)]
                counts[f"{mode}_{split}_samples"] = stats.samples
                sets[name] = {"uri": set_uri, "samples": stats.samples, "shards": stats.shards, "digest": index.digest,
                              "skipped": dict(sorted(stats.skipped.items()))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not sets:
        raise DataError(f"{dataset_uri}: no det/<split>_label.txt or rec/<split>_label.txt to shard")
    counts.update(files=len(files), bytes=sum(f.size for f in files), shards=len(files))
    m = Manifest(kind=SHARDS_KIND, prefix=out_uri.rstrip("/"), files=files, counts=counts,
                 created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 extra={"source": dataset_uri, "source_digest": source_digest, "shard_size": shard_size,
                        "format": FORMAT, "sets": sets})
    write_manifest(m, out_uri, store)
    log.info("shards -> %s: %s", m.prefix, {k: v["samples"] for k, v in sets.items()})
    return m


# ------------------------------------------------------------------- is this data new?
def dataset_digest(raw_uri: str) -> str:
    """Manifest digest of a raw dataset: its published manifest, or (a local directory) the
    digest ``ingest`` would publish it with (same file selection and hashing), without uploading."""
    from ocr_core.storage.client import sha256_file
    from ocr_core.storage.manifest import _local_files

    if is_published(raw_uri):
        return read_manifest(raw_uri).digest()
    uri = parse_uri(raw_uri)
    if uri.is_local and Path(uri.key).is_dir():
        files = [FileEntry(rel, p.stat().st_size, sha256_file(p)) for rel, p in _local_files(Path(uri.key))]
        return Manifest(kind="raw-dataset", prefix=raw_uri, files=files).digest()
    raise DataError(f"{raw_uri}: not a published dataset (no manifest.json) and not a local directory")


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
