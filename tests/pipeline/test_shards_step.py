"""The DAG's ``build_shards`` step and training on shards (``data_format=shards``), against a real
embedded S3 server (SeaweedFS): the shard sets and their index, the training worker streaming them
with nothing of the dataset staged, and the run's report as the train step's HTML artifact.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.steps import data as D
from components.steps import train as T
from components.steps.common import config_digest, content_key
from ocr_core.storage.embedded import EmbeddedS3, find_weed_binary
from ocr_core.storage.uri import StorageError
from pipelines.sample_data import make_raw_dataset
from tests.pipeline.tiny import DET_EVAL, REC_EVAL, STEP, TINY_NET

DET_CONFIG = "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml"
REC_CONFIG = "pipelines/configs/ch_PP-OCRv3_rec_ctc_lmdb.yml"
DET_TRAIN = [*STEP, *DET_EVAL, *[f"Architecture.{o}" for o in TINY_NET],
             "Train.dataset.transforms.EastRandomCropData.size=[96, 96]", "Train.loader.batch_size_per_card=2"]
REC_TRAIN = [*STEP, *REC_EVAL, "Train.dataset.transforms.RecResizeImg.image_shape=[3, 48, 96]",
             "Train.loader.batch_size_per_card=4"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server; a raw dataset ingested, converted and validated as the DAG does, and its shards built."""
    try:
        find_weed_binary()
    except StorageError as exc:
        pytest.skip(f"SeaweedFS binary not installed: {exc}")
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("shards-step")
    mp.setenv("OCRFLOW_WORK_DIR", str(tmp / "work"))
    mp.setenv("OCRFLOW_SHARD_CACHE", str(tmp / "shard-cache"))
    with EmbeddedS3(tmp / "s3") as server:
        for k, v in server.env.items():
            mp.setenv(k, v)
        raw = make_raw_dataset(tmp / "raw", det_train=2, det_test=1, rec_train=4, rec_test=2)
        dataset = D.convert_labels(D.ingest(str(raw), "s3://ocrflow").prefix, "s3://ocrflow/datasets/d")
        D.validate_dataset(dataset.prefix)
        D.build_rec_lmdb(dataset.prefix, dataset.prefix + "-lmdb")  # what eval rec stages
        shards = D.build_dataset_shards(dataset.prefix, dataset.prefix + "-shards", "64KB")
        yield {"tmp": tmp, "raw": raw, "dataset": dataset, "shards": shards, "server": server}
    mp.undo()


def test_build_shards_publishes_one_indexed_set_per_label_file(s3: dict[str, Any]) -> None:
    from ocr_core.data.shard_format import FORMAT, read_index
    from ocr_core.storage.client import open_store
    from ocr_core.storage.manifest import read_manifest

    dataset, m = s3["dataset"], s3["shards"]
    assert m.prefix == "s3://ocrflow/datasets/d-shards" and m.kind == "shard-sets"
    assert m.extra["source"] == dataset.prefix and m.extra["source_digest"] == dataset.digest()
    assert m.extra["format"] == FORMAT and m.extra["shard_size"] == "64KB"
    want = {"det/train": 2, "det/test": 1, "rec/train": 4, "rec/test": 2}  # the label files' lines
    assert {k: v["samples"] for k, v in m.extra["sets"].items()} == want
    assert {k: m.counts[f"{k.replace('/', '_')}_samples"] for k in want} == want
    store = open_store(m.prefix)
    listed = {f.path for f in m.files}
    for name, n in want.items():
        index = read_index(f"{m.prefix}/{name}")  # each set is a ShardDataSet's data_dir
        assert index.total == n and index.mode == name.split("/")[0]
        assert index.digest == m.extra["sets"][name]["digest"]
        assert {f"{name}/{s}" for s in index.names} <= listed
    assert m.counts["shards"] == len(m.files) > 4  # 64KB shards: the det images need more than one each
    for f in m.files:  # the top manifest's sizes and sha256 are the stored objects'
        info = store.stat(f"{m.prefix}/{f.path}")
        assert (info.size, info.sha256) == (f.size, f.sha256)
    assert read_manifest(m.prefix).digest() == m.digest()


def test_shards_hold_the_label_lines_and_images(s3: dict[str, Any], tmp_path: Path) -> None:
    """Every sample of det/train is its label line's label and image bytes, ``source`` names the line."""
    from ocr_core.data.shard_format import read_index
    from ocr_core.storage.client import open_store

    dataset, m = s3["dataset"], s3["shards"]
    src = tmp_path / "src"
    from ocr_core.storage.manifest import sync_down

    sync_down(dataset.prefix, src, quiet=True)
    lines = (src / "det" / "train_label.txt").read_text(encoding="utf-8").splitlines()
    index = read_index(f"{m.prefix}/det/train")
    samples = []
    for i, name in enumerate(index.names):
        local = tmp_path / name
        open_store(index.uri(i)).get_file(index.uri(i), local, expected_sha256=index.sha256[i])
        with tarfile.open(local) as tar:
            members = tar.getmembers()
            for img, meta in zip(members[::2], members[1::2]):
                samples.append((json.loads(tar.extractfile(meta).read()), tar.extractfile(img).read()))
    assert len(samples) == len(lines) == 2
    for n, (meta, img) in enumerate(samples, 1):
        path, label = lines[n - 1].split("\t", 1)
        assert meta == {"label": label, "path": path, "source": f"det/train_label.txt:{n}"}
        assert img == (src / path).read_bytes()


def test_build_shards_reuses_and_rebuilds_byte_identical(s3: dict[str, Any]) -> None:
    from ocr_core.storage.client import open_store

    dataset, m = s3["dataset"], s3["shards"]
    again = D.build_dataset_shards(dataset.prefix, m.prefix, "64KB")
    assert again.created == m.created and again.digest() == m.digest()  # reused, not rebuilt
    open_store(m.prefix).delete(m.prefix, recursive=True)
    rebuilt = D.build_dataset_shards(dataset.prefix, m.prefix, "64KB")
    assert rebuilt.digest() == m.digest()  # same dataset -> the same shard bytes: training keys stay put
    other = D.build_dataset_shards(dataset.prefix, s3["dataset"].prefix + "-shards-1MB", "1MB")
    assert other.digest() != m.digest() and other.counts["shards"] == 4  # one shard per set


def test_data_format_is_checked() -> None:
    from ocr_core.errors import ConfigError
    from pipelines.ocr_train_pipeline import check_arguments

    check_arguments({"raw_data_uri": "x", "data_format": "shards"})
    with pytest.raises(ConfigError, match="data_format must be one of files, shards, got 'tar'"):
        check_arguments({"raw_data_uri": "x", "data_format": "tar"})


def test_files_plan_keeps_its_key_and_command() -> None:
    """data_format=files: the plan, worker command and content key are what they were before shards
    existed, so finished runs are reused and running jobs see the same command."""
    plan = T.stage_plan("det", "s3://b/d")
    old_fields = {"model_type": "det", "data": "s3://b/d", "init": "", "init_keys": (), "teacher": "",
                  "teacher_key": T.TEACHER_KEY}
    want = content_key(config_digest(DET_CONFIG, ["Global.seed=3"]), ["Global.seed=3"], old_fields, {"data": "x"}, 1, 1)
    assert T.train_key(DET_CONFIG, ["Global.seed=3"], plan, {"data": "x"}, 1, 1) == want
    prog = T.worker_program("cfg.yml", [], plan, "s3://b/runs/k/s")
    assert prog == ["-m", "components.steps.train", "worker", "--out-uri", "s3://b/runs/k/s", "--model-type", "det",
                    "--stage", "data=s3://b/d", "--", "-c", "cfg.yml"]
    sharded = T.stage_plan("det", "s3://b/d", shards_uri="s3://b/d-shards")
    assert T.train_key(DET_CONFIG, ["Global.seed=3"], sharded, {"shards": "y"}, 1, 1) != want


def test_files_plan_config_is_the_staged_dataset(tmp_path: Path) -> None:
    """data_format=files: the worker's config is the one-pass layering it always was (staged paths)."""
    from components.steps.common import layered_config
    from ocr_core.config import validate_config

    plan, staged = T.stage_plan("det", "s3://b/d"), {"data": "/st/data"}
    want = validate_config(layered_config(DET_CONFIG, plan.settings(staged), DET_TRAIN,
                                          {"Global.save_model_dir": str(tmp_path)}))
    got = T.training_config(DET_CONFIG, DET_TRAIN, plan, staged, tmp_path)
    assert got == want and got["Train"]["dataset"]["label_file_list"] == ["/st/data/det/train_label.txt"]
    assert got["Global"]["_config_file"].endswith("ch_PP-OCRv3_det_finetune.yml")


def test_worker_config_streams_the_shards(s3: dict[str, Any], tmp_path: Path) -> None:
    """The config a rank trains with: Train/Eval are ShardDataSets on the s3:// sets, the file dataset's
    keys are gone, the transforms and the user's overrides (cache_size too) are kept."""
    m = s3["shards"]
    plan = T.stage_plan("det", s3["dataset"].prefix, shards_uri=m.prefix)
    assert plan.uris() == {}  # nothing to stage
    prog = T.worker_program(DET_CONFIG, DET_TRAIN, plan, "s3://ocrflow/runs/k/det")
    assert "--stage" not in prog and prog[prog.index("--shards") + 1] == m.prefix
    assert T._parse_worker_args(prog[3:])[1] == plan
    cfg = T.training_config(DET_CONFIG, [*DET_TRAIN, "Train.dataset.cache_size=64MB"], plan, {}, tmp_path)
    train, ev = cfg["Train"]["dataset"], cfg["Eval"]["dataset"]
    assert train["name"] == ev["name"] == "ShardDataSet"
    assert train["data_dir"] == f"{m.prefix}/det/train" and ev["data_dir"] == f"{m.prefix}/det/test"
    assert "label_file_list" not in train and "ratio_list" not in train and train["cache_size"] == "64MB"
    crop = next(t for t in train["transforms"] if "EastRandomCropData" in t)
    assert crop["EastRandomCropData"]["size"] == [96, 96]
    rec = T.training_config(REC_CONFIG, REC_TRAIN, T.stage_plan("rec", "s3://x/lmdb", shards_uri=m.prefix), {}, tmp_path)
    assert rec["Train"]["dataset"]["name"] == "ShardDataSet" and rec["Eval"]["dataset"]["data_dir"] == \
        f"{m.prefix}/rec/test"


@pytest.mark.parametrize("model_type", ["det", "rec"])
def test_training_on_shards_stages_no_data(s3: dict[str, Any], tmp_path: Path, model_type: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (tiny, one-step) training step through the worker: it downloads no dataset, the run's
    config reads the shard sets on S3, and its report becomes the train step's HTML artifact."""
    import yaml

    from components._kfp_io import HTML_MAX_BYTES, fit_html, training_report
    from ocr_core.storage.client import open_store

    staged: list[str] = []
    real = T.sync_down
    monkeypatch.setattr(T, "sync_down", lambda uri, dest, **k: staged.append(uri) or real(uri, dest, **k))
    m = s3["shards"]
    data = s3["dataset"].prefix if model_type == "det" else s3["dataset"].prefix + "-lmdb"  # what the DAG passes
    plan = T.stage_plan(model_type, data, shards_uri=m.prefix)
    config, overrides = (DET_CONFIG, DET_TRAIN) if model_type == "det" else (REC_CONFIG, REC_TRAIN)
    model = T.launch_training_step(config, overrides, plan, "s3://ocrflow", f"{model_type}_shards",
                                   launcher="inprocess", epochs=1)
    assert staged == []  # no --stage at all: the dataset (and nothing else) was not downloaded
    assert model.extra["global_step"] == 1 and model.prefix.startswith("s3://ocrflow/runs/")
    store = open_store(model.prefix)
    run_cfg = yaml.safe_load(store.get_bytes(f"{model.prefix}/config.yml"))
    assert run_cfg["Train"]["dataset"]["name"] == "ShardDataSet"
    assert run_cfg["Train"]["dataset"]["data_dir"] == f"{m.prefix}/{model_type}/train"
    assert run_cfg["Eval"]["dataset"]["data_dir"] == f"{m.prefix}/{model_type}/test"
    log = store.get_bytes(f"{model.prefix}/train.log").decode()
    n_train, n_test = (2, 1) if model_type == "det" else (4, 2)  # read from the train and test sets
    assert f"Train data: {n_train} samples" in log and f"evaluation: {n_test} images" in log
    # the eval step reads the staged dataset (files / LMDB) with the model's own config, whose dataset
    # sections are ShardDataSets now
    from components.steps.models import evaluate_models

    scores = evaluate_models(model_type, data, {"candidate": model.prefix}, DET_EVAL if model_type == "det" else REC_EVAL)
    assert set(scores["candidate"]) >= ({"hmean"} if model_type == "det" else {"acc"})
    html = fit_html(training_report(model), f"{model.prefix}/report.html")
    assert "OCRFlow training report" in html and len(html.encode()) <= HTML_MAX_BYTES
    assert "http" not in html.replace(m.prefix, "") and "<script" not in html and "<link" not in html
