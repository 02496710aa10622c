"""Each component's function on its own (local-directory store, tiny synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.steps import data as D
from components.steps import models as M
from components.steps import registry as R
from components.steps import train as T
from components.steps.common import content_key
from components.steps.registry import gate_decision
from ocr_core.errors import ConfigError, DataError
from ocr_core.metrics.e2e_metric import match_e2e, prf
from pipelines.sample_data import make_raw_dataset
from pipelines.submit import parse_params


# ------------------------------------------------------------------------------ the gate
def test_gate_no_production_candidate_worse_than_start_keeps() -> None:
    d = gate_decision(0.40, production=None, start=0.55)
    assert not d.publish and d.champion == "start" and d.champion_hmean == 0.55
    assert d.margin == pytest.approx(-0.15) and "keep the start model" in d.reason


def test_gate_no_production_candidate_better_than_start_publishes() -> None:
    d = gate_decision(0.70, production=None, start=0.55, margin=0.05)
    assert d.publish and d.champion == "start" and d.margin == pytest.approx(0.15)
    assert gate_decision(0.58, None, 0.55, margin=0.05).publish is False  # gain below the required margin


def test_gate_production_is_the_champion_when_it_exists() -> None:
    d = gate_decision(0.70, production=0.80, start=0.30)  # beats start, loses to production
    assert not d.publish and d.champion == "production" and d.champion_hmean == 0.80
    d = gate_decision(0.85, production=0.80, start=0.99)  # production, not start, is compared
    assert d.publish and d.champion == "production" and d.margin == pytest.approx(0.05)
    assert gate_decision(0.5, 0.5, None, 0.0).publish  # a tie with production publishes (>=)


def test_gate_from_scratch_publishes_on_the_candidate_alone() -> None:
    d = gate_decision(0.05, production=None, start=None, margin=0.1)
    assert d.publish and d.champion == "none" and d.champion_hmean is None and d.margin is None
    assert "from scratch" in d.reason


def test_start_pair_fills_parts_trained_from_scratch_with_the_candidate() -> None:
    from components.steps.registry import start_pair

    cand = {"det": "s3://b/cand-det", "rec": "s3://b/cand-rec"}
    assert start_pair(cand, {"det": "", "rec": ""}) is None  # from scratch: no champion but production
    uris, parts = start_pair(cand, {"det": "s3://b/start-det", "rec": "s3://b/start-rec"})
    assert uris == {"det": "s3://b/start-det", "rec": "s3://b/start-rec"} and set(parts.values()) == {"start"}
    uris, parts = start_pair(cand, {"det": "s3://b/start-det", "rec": ""})
    assert uris == {"det": "s3://b/start-det", "rec": "s3://b/cand-rec"} and parts["rec"].startswith("candidate")


def _gate_artifacts(tmp_path: Path, results: dict) -> tuple:
    from kfp.dsl import Artifact, Markdown, Metrics

    (tmp_path / "result").write_text(json.dumps({"results": results}))
    return Artifact(uri=str(tmp_path / "result")), Metrics(uri=str(tmp_path / "decision")), \
        Markdown(uri=str(tmp_path / "report"))


def test_gate_component_keeps_a_candidate_worse_than_the_start_model(tmp_path: Path) -> None:
    """The gate step itself (its Python function, as kfp.local runs it): no production model, the
    start pair scores 0.62 end to end, a forced-bad candidate 0.10 -> not published, and the
    Metrics/Markdown show both numbers, the margin and the champion."""
    from components.gate import gate

    result, decision, report = _gate_artifacts(tmp_path, {
        "candidate": {"hmean": 0.10}, "start": {"hmean": 0.62}, "production": None})
    assert gate.python_func(result=result, margin=0.0, decision=decision, report=report) is False
    assert decision.metadata["publish"] == 0.0 and decision.metadata["champion"] == "start"
    assert decision.metadata["candidate_hmean"] == 0.10 and decision.metadata["champion_hmean"] == 0.62
    assert decision.metadata["margin"] == pytest.approx(-0.52)
    md = Path(report.path).read_text()
    assert "keep the champion" in md and "0.1000" in md and "0.6200" in md and "-0.5200" in md

    result, decision, report = _gate_artifacts(tmp_path, {
        "candidate": {"hmean": 0.70}, "start": {"hmean": 0.62}, "production": None})
    assert gate.python_func(result=result, margin=0.05, decision=decision, report=report) is True
    assert decision.metadata["champion"] == "start" and decision.metadata["margin"] == pytest.approx(0.08)


def test_det_recipe_arguments_fail_fast() -> None:
    from pipelines.ocr_train_pipeline import check_arguments

    T.check_det_recipe("finetune")
    T.check_det_recipe("cml", "s3://b/teacher-init")
    with pytest.raises(ConfigError, match="det_recipe=cml needs det_teacher_init_uri"):
        T.check_det_recipe("cml", "")
    with pytest.raises(ConfigError, match="det_recipe must be one of finetune, cml"):
        T.check_det_recipe("dml")
    check_arguments({"raw_data_uri": "x"})  # the defaults: finetune
    with pytest.raises(ConfigError, match="det_teacher_init_uri"):
        check_arguments({"raw_data_uri": "x", "det_recipe": "cml"})


def test_ingest_step_rejects_cml_without_teacher_init_first(tmp_path: Path) -> None:
    """On a cluster the first step fails, before it publishes anything."""
    from kfp.dsl import Dataset

    from components.ingest import ingest

    raw = Dataset(uri=str(tmp_path / "raw-artifact"))
    with pytest.raises(ConfigError, match="det_teacher_init_uri"):
        ingest.python_func(raw_uri=str(tmp_path / "nowhere"), store_root=str(tmp_path / "store"), raw=raw,
                           det_recipe="cml", det_teacher_init_uri="")
    assert not (tmp_path / "store").exists() and not Path(raw.path).exists()


def test_pipeline_run_cml_without_teacher_init_exits_before_starting(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ocr_core.cli import main
    from ocr_core.storage import embedded

    def no_server(*a: object, **k: object) -> None:
        raise AssertionError("the object store was started")

    monkeypatch.setattr(embedded.EmbeddedS3, "__init__", no_server)
    rc = main(["pipeline", "run", "--local", "--raw-data", "/nonexistent", "-p", "det_recipe=cml"])
    err = capsys.readouterr().err
    assert rc == 2 and "det_recipe=cml needs det_teacher_init_uri" in err


def test_content_key_is_stable_and_sensitive() -> None:
    assert content_key("a", [1, 2], {"x": 1}) == content_key("a", [1, 2], {"x": 1})
    assert content_key("a", [1, 2]) != content_key("a", [2, 1])


def test_match_e2e_counts_dont_care_and_text() -> None:
    sq = [[0, 0], [10, 0], [10, 10], [0, 10]]
    far = [[50, 50], [60, 50], [60, 60], [50, 60]]
    gts = [(sq, "Hello"), (far, "###")]
    preds = [{"points": sq, "text": "hello "}, {"points": far, "text": "x"},
             {"points": [[100, 0], [110, 0], [110, 10], [100, 10]], "text": "y"}]
    assert match_e2e(preds, gts) == (1, 2, 1)  # dont-care match not counted; one false positive
    assert prf(1, 2, 1) == pytest.approx({"precision": 0.5, "recall": 1.0, "hmean": 2 / 3})


def test_stage_plan_and_worker_program() -> None:
    plan = T.stage_plan("det", "s3://b/d", "s3://b/init", ["Architecture.Models.Student.pretrained"],
                        "s3://b/t", "")
    assert plan.uris() == {"data": "s3://b/d", "init": "s3://b/init", "teacher": "s3://b/t"}
    staged = {"data": "/st/data", "init": "/st/init", "teacher": "/st/teacher"}  # where the worker staged them
    settings = plan.settings(staged)
    assert settings["Train.dataset.data_dir"] == "/st/data"
    assert settings["Architecture.Models.Student.pretrained"] == "/st/init/model.pt"
    assert settings["Architecture.Models.Teacher.pretrained"] == "/st/teacher/model.pt"
    prog = T.worker_program("cfg.yml", ["A.b=1"], plan, "s3://b/runs/k/step")
    assert prog[:3] == ["-m", "components.steps.train", "worker"]
    assert prog[prog.index("--") + 1:] == ["-c", "cfg.yml", "-o", "A.b=1"]
    assert T._parse_worker_args(prog[3:])[1] == plan  # the worker reads the same plan back
    rec = T.stage_plan("rec", "s3://b/l")
    assert rec.uris() == {"data": "s3://b/l"} and rec.settings({"data": "/st/l"}) == {
        "Train.dataset.data_dir": "/st/l/train", "Eval.dataset.data_dir": "/st/l/test"}


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x", 'c=["A.b=1"]', "d=true"]) == {"a": 1, "b": "x", "c": ["A.b=1"], "d": True}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("store")
    raw = make_raw_dataset(tmp_path_factory.mktemp("raw"), det_train=2, det_test=1, rec_train=4, rec_test=2)
    return root, raw


def test_data_steps(store: tuple[Path, Path]) -> None:
    root, raw = store
    m_raw = D.ingest(str(raw), str(root))
    assert m_raw.kind == "raw-dataset" and D.ingest(m_raw.prefix, str(root)).digest() == m_raw.digest()
    ds = D.convert_labels(m_raw.prefix, str(root / "datasets" / "d"))
    assert ds.counts["det_train_images"] == 2 and ds.counts["rec_test_words"] == 2
    label = (root / "datasets" / "d" / "det" / "train_label.txt").read_text().splitlines()[0]
    assert label.startswith("det/train/images/img_1.jpg\t") and json.loads(label.split("\t", 1)[1])
    stats = D.validate_dataset(ds.prefix, 0.0)
    assert stats["error_ratio"] == 0.0 and stats["rec_train_lines"] == 4.0
    lm = D.build_rec_lmdb(ds.prefix, str(root / "datasets" / "d-lmdb"))
    assert lm.counts["train_samples"] == 4 and lm.counts["test_samples"] == 2
    # LMDB bytes are not reproducible: the published LMDBs of the same dataset are reused (stable digest)
    assert D.build_rec_lmdb(ds.prefix, str(root / "datasets" / "d-lmdb")).digest() == lm.digest()


def test_validate_fails_above_threshold(store: tuple[Path, Path], tmp_path: Path) -> None:
    root, raw = store
    ds = D.convert_labels(D.ingest(str(raw), str(root)).prefix, str(tmp_path / "bad"))
    label = tmp_path / "bad" / "rec" / "train_label.txt"
    label.write_text(label.read_text() + "rec/train/missing.png\tabc\n")
    from ocr_core.storage.manifest import sync_up

    sync_up(tmp_path / "bad", str(tmp_path / "bad2"), quiet=True)
    with pytest.raises(DataError, match="bad label lines"):
        D.validate_dataset(str(tmp_path / "bad2"), 0.0)
    assert D.validate_dataset(str(tmp_path / "bad2"), 0.2)["error_ratio"] == pytest.approx(1 / 10)
    del ds


def test_publish_and_pointer(tmp_path: Path) -> None:
    from ocr_core.storage.manifest import sync_up

    reg = str(tmp_path / "reg")
    assert R.production_pointer(reg, "m") is None
    for part in ("det", "rec"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "model.onnx").write_bytes(part.encode())
        sync_up(tmp_path / part, str(tmp_path / "src" / part), kind="onnx-model", quiet=True,
                extra={"onnx": "model.onnx"})
    ptr = R.publish({p: str(tmp_path / "src" / p) for p in ("det", "rec")}, reg, "m", "v1", {"hmean": 0.5})
    assert R.production_pointer(reg, "m") == ptr
    assert (tmp_path / "reg" / "models" / "m" / "v1" / "rec" / "model.onnx").read_bytes() == b"rec"


def test_evaluate_models_puts_foreign_rec_configs_on_the_staged_lmdb(store: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """An off-the-shelf rec checkpoint whose own config reads SimpleDataSet label files that do not
    exist here (as the imported PP-OCRv3 rec does) is evaluated on the staged LMDB test split."""
    import copy

    from ocr_core.config import load_charset, load_config, public_config, wire_rec_heads
    from ocr_core.modeling import build_model
    from ocr_core.storage.manifest import sync_up
    from ocr_core.weights.checkpoint import save_checkpoint
    from tests.integration.det_fixtures import ROOT

    root, raw = store
    ds = D.convert_labels(D.ingest(str(raw), str(root)).prefix, str(tmp_path / "d"))
    lm = D.build_rec_lmdb(ds.prefix, str(tmp_path / "d-lmdb"))
    cfg = load_config(ROOT / "configs/rec/rec_icdar15_train.yml")
    assert cfg["Eval"]["dataset"]["name"] == "SimpleDataSet"
    charset = load_charset(cfg)
    assert charset is not None
    cfg = wire_rec_heads(cfg, len(charset) + 1)
    model = build_model(copy.deepcopy(cfg["Architecture"]))
    save_checkpoint(tmp_path / "ots" / "model.pt", {
        "model": model.state_dict(), "architecture": cfg["Architecture"], "model_type": "rec",
        "config": public_config(cfg), "charset": None, "epoch": 0, "global_step": 0})
    ots = sync_up(tmp_path / "ots", str(tmp_path / "ots-pub"), kind="model", quiet=True,
                  extra={"checkpoint": "model.pt"})
    results = M.evaluate_models("rec", lm.prefix, {"off_the_shelf": ots.prefix})
    assert set(results["off_the_shelf"]) >= {"acc", "norm_edit_dis"}
    assert 0.0 <= results["off_the_shelf"]["acc"] <= 1.0


def test_checkpoint_uploader_follows_the_engines_saves(tmp_path: Path) -> None:
    """The worker's interim upload is driven by TrainHooks.after_save (no polling): each ``latest``
    save is uploaded, other saves and other ranks' calls are not, and close() flushes a pending one."""
    save_dir, out = tmp_path / "out", tmp_path / "store" / "run"
    save_dir.mkdir()
    up = T.CheckpointUploader(save_dir, str(out))
    hooks = T.combine_hooks(up.hooks(), None)
    assert hooks is not None and hooks.after_save is not None
    up.start()
    (save_dir / "latest.pt").write_bytes(b"epoch 1")
    hooks.after_save(None, "latest", save_dir / "latest.pt")
    hooks.after_save(None, "best_accuracy", save_dir / "best_accuracy.pt")  # not uploaded
    hooks.after_save(None, "latest", None)  # a rank other than 0 saved nothing
    (save_dir / "latest.pt").write_bytes(b"epoch 2")
    hooks.after_save(None, "latest", save_dir / "latest.pt")
    up.close()
    assert not up.is_alive()
    assert (out / "latest.pt").read_bytes() == b"epoch 2"
    assert 1 <= up.uploads <= 2 and not (out / "best_accuracy.pt").exists()


def test_combine_hooks_calls_each_in_order() -> None:
    from ocr_core.engine.run import TrainHooks

    calls: list[str] = []
    a = TrainHooks(after_step=lambda r, s: calls.append("a-step") or False,
                   after_save=lambda r, n, p: calls.append(f"a-{n}"))
    b = TrainHooks(after_step=lambda r, s: calls.append("b-step") or True, after_eval=lambda r, m: calls.append("b-eval"))
    both = T.combine_hooks(a, None, b)
    assert both is not None and both.after_step and both.after_eval and both.after_save
    assert both.after_step(None, None) is True
    both.after_eval(None, {})
    both.after_save(None, "latest", None)
    assert calls == ["a-step", "b-step", "b-eval", "a-latest"]
    assert T.combine_hooks(None, a) is a and T.combine_hooks() is None


# ------------------------------------------------------------------ export (ONNX / TensorRT)
DET_EVAL = ["Eval.dataset.transforms.DetResizeForTest={limit_side_len: 160, limit_type: max}"]


@pytest.fixture(scope="module")
def det_export_inputs(store: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(staged det dataset URI, det model prefix URI): a tiny seeded DB net whose checkpoint carries its config."""
    import torch

    from ocr_core.config import load_config, public_config
    from ocr_core.modeling import build_model
    from ocr_core.storage.manifest import sync_up
    from ocr_core.weights.checkpoint import save_checkpoint
    from tests.integration.det_fixtures import ROOT
    from tests.pipeline.tiny import TINY_NET

    root, raw = store
    tmp = tmp_path_factory.mktemp("export-inputs")
    ds = D.convert_labels(D.ingest(str(raw), str(root)).prefix, str(tmp / "ds"))
    cfg = load_config(ROOT / "configs/det/det_mv3_db.yml", [f"Architecture.{o}" for o in TINY_NET])
    torch.manual_seed(0)
    model = build_model(dict(cfg["Architecture"]))
    save_checkpoint(tmp / "m" / "model.pt", {"model": model.state_dict(), "architecture": cfg["Architecture"],
                                             "model_type": "det", "config": public_config(cfg)})
    m = sync_up(tmp / "m", str(tmp / "model"), kind="model", quiet=True, extra={"checkpoint": "model.pt"})
    return ds.prefix, m.prefix


def test_export_step_reads_the_checkpoint_once(det_export_inputs: tuple[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Config, weights and the parity gate's eager side come from one ``torch.load`` (#17 item 6)."""
    import torch

    from ocr_core.storage.manifest import read_manifest

    ds, model = det_export_inputs
    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    loads: list[str] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(Path(f).name) or real_load(f, *a, **k))
    m = M.export_model("det", model, ds, str(tmp_path / "det-onnx"), DET_EVAL)
    assert loads == ["model.pt"]
    assert {f.path for f in read_manifest(m.prefix).files} == {"model.onnx", "model.pt", "inference.yml"}
    assert m.extra["format"] == "onnx" and "engine" not in m.extra and m.extra["parity"]["passed"]
    assert m.extra["parity"]["eager"] is not None  # the Eval metric ran


def test_export_step_tensorrt_publishes_the_engine_and_publish_carries_it(
        det_export_inputs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.storage.manifest import read_manifest
    from tests.unit.fake_tensorrt import install

    ds, model = det_export_inputs
    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    install(monkeypatch)
    m = M.export_model("det", model, ds, str(tmp_path / "det-trt"), DET_EVAL, fmt="tensorrt")
    assert {f.path for f in m.files} == {"model.onnx", "model.pt", "inference.yml", "model.engine"}
    assert m.extra["format"] == "tensorrt" and m.extra["engine"] == "model.engine"
    trt = m.extra["tensorrt_parity"]
    assert trt["passed"] and trt["max_abs"] <= 1e-6 and trt["metric"] == "hmean"
    assert trt["onnx"] == m.extra["parity"]["onnx"] and trt["tensorrt"] is not None  # the metric gate ran
    ptr = R.publish({"det": m.prefix, "rec": m.prefix}, str(tmp_path / "reg"), "m", "v1", {"hmean": 0.5})
    published = read_manifest(ptr["parts"]["det"]["uri"])
    assert "model.engine" in {f.path for f in published.files} and published.extra["engine"] == "model.engine"
    assert (tmp_path / "reg" / "models" / "m" / "v1" / "det" / "model.engine").read_bytes() == \
        (Path(m.prefix) / "model.engine").read_bytes()


def test_export_step_tensorrt_drift_fails_and_publishes_nothing(
        det_export_inputs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.export.parity import ParityError
    from ocr_core.storage.manifest import is_published
    from tests.unit.fake_tensorrt import install

    ds, model = det_export_inputs
    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    install(monkeypatch, drift=0.05)
    with pytest.raises(ParityError, match="TensorRT parity check failed: tensor parity"):
        M.export_model("det", model, ds, str(tmp_path / "det-both"), DET_EVAL, fmt="both")
    assert not is_published(str(tmp_path / "det-both"))


def test_export_step_without_tensorrt_fails_in_one_line_before_any_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "tensorrt_available", lambda: (False, "no CUDA device"))
    missing = str(tmp_path / "nowhere")  # never read: the check comes first
    for fmt in ("tensorrt", "both"):
        with pytest.raises(tensorrt_build.TensorRTUnavailable) as err:
            M.export_model("det", missing, missing, str(tmp_path / "out"), fmt=fmt)
        assert "\n" not in str(err.value) and "nothing was exported" in str(err.value)
    with pytest.raises(ConfigError, match="export format must be one of onnx, tensorrt, both; got 'engine'"):
        M.export_model("det", missing, missing, str(tmp_path / "out"), fmt="engine")
    assert not (tmp_path / "out").exists()


def test_staged_data_drops_keys_the_staged_dataset_does_not_take(tmp_path: Path) -> None:
    """A det model trained on shards (ShardDataSet keys in its config) evaluates on staged label files."""
    from ocr_core.data.simple_dataset import SimpleDataSet
    from ocr_core.registry import check_kwargs  # what the dataset builder checks a section with

    tf = [{"DecodeImage": {"img_mode": "BGR"}}]
    trained = {"Global": {}, "Train": {"dataset": {"name": "ShardDataSet", "data_dir": "s3://b/shards/det/train",
                                                   "cache_size": "16GB", "shuffle_buffer": 64, "seed": 3,
                                                   "transforms": tf}},
               "Eval": {"dataset": {"name": "ShardDataSet", "data_dir": "s3://b/shards/det/test", "verify": True,
                                    "transforms": tf}}}
    cfg = M.layered_config(trained, D.data_settings("det", tmp_path), (), {})
    M.on_staged_data(cfg, "det")
    for split in ("Train", "Eval"):
        ds = dict(cfg[split]["dataset"])
        assert ds.pop("name") == "SimpleDataSet" and ds.pop("transforms") == tf
        check_kwargs(SimpleDataSet, ds, f"{split}.dataset")  # refused 'cache_size' / 'verify' before
    assert cfg["Train"]["dataset"]["seed"] == 3 and cfg["Train"]["dataset"]["data_dir"] == str(tmp_path)
    rec = {"Train": {"dataset": {"name": "SimpleDataSet", "data_dir": "x", "label_file_list": ["a"],
                                 "transforms": tf}}}
    assert M.on_staged_data(rec, "rec")["Train"]["dataset"] == {"name": "LMDBDataSet", "data_dir": "x",
                                                                  "transforms": tf}
