"""Each component's function on its own (local-directory store, tiny synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import _steps as S
from components import _train as T
from components._system_eval import match_e2e, prf
from ocr_core.errors import DataError
from pipelines.sample_data import make_raw_dataset
from pipelines.submit import parse_params


@pytest.mark.parametrize(("new", "champ", "margin", "want"), [
    (0.5, None, 0.1, True), (0.60, 0.50, 0.05, True), (0.54, 0.50, 0.05, False), (0.5, 0.5, 0.0, True)])
def test_gate_decision(new: float, champ: float | None, margin: float, want: bool) -> None:
    ok, why = S.gate_decision(new, champ, margin)
    assert ok is want and ("publish" in why) == want


def test_content_key_is_stable_and_sensitive() -> None:
    assert S.content_key("a", [1, 2], {"x": 1}) == S.content_key("a", [1, 2], {"x": 1})
    assert S.content_key("a", [1, 2]) != S.content_key("a", [2, 1])


def test_match_e2e_counts_dont_care_and_text() -> None:
    sq = [[0, 0], [10, 0], [10, 10], [0, 10]]
    far = [[50, 50], [60, 50], [60, 60], [50, 60]]
    gts = [(sq, "Hello"), (far, "###")]
    preds = [{"points": sq, "text": "hello "}, {"points": far, "text": "x"},
             {"points": [[100, 0], [110, 0], [110, 10], [100, 10]], "text": "y"}]
    assert match_e2e(preds, gts) == (1, 2, 1)  # dont-care match not counted; one false positive
    assert prf(1, 2, 1) == pytest.approx({"precision": 0.5, "recall": 1.0, "hmean": 2 / 3})


def test_stage_plan_and_worker_program() -> None:
    stage, ov = T.stage_plan("det", "s3://b/d", "s3://b/init", ["Architecture.Models.Student.pretrained"],
                             "s3://b/t", "")
    assert stage == {"data": "s3://b/d", "init": "s3://b/init", "teacher": "s3://b/t"}
    assert "Train.dataset.data_dir=${data}" in ov
    assert "Architecture.Models.Student.pretrained=${init}/model.pt" in ov
    assert "Architecture.Models.Teacher.pretrained=${teacher}/model.pt" in ov
    prog = T.worker_program("cfg.yml", ["A.b=1"], stage, "s3://b/runs/k/step")
    assert prog[:3] == ["-m", "components._train", "worker"]
    assert prog[prog.index("--") + 1:] == ["-c", "cfg.yml", "-o", "A.b=1"]
    rec_stage, rec_ov = T.stage_plan("rec", "s3://b/l")
    assert rec_stage == {"data": "s3://b/l"} and rec_ov == ["Train.dataset.data_dir=${data}/train",
                                                          "Eval.dataset.data_dir=${data}/test"]


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x", 'c=["A.b=1"]', "d=true"]) == {"a": 1, "b": "x", "c": ["A.b=1"], "d": True}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("store")
    raw = make_raw_dataset(tmp_path_factory.mktemp("raw"), det_train=2, det_test=1, rec_train=4, rec_test=2)
    return root, raw


def test_data_steps(store: tuple[Path, Path]) -> None:
    root, raw = store
    m_raw = S.ingest(str(raw), str(root))
    assert m_raw.kind == "raw-dataset" and S.ingest(m_raw.prefix, str(root)).digest() == m_raw.digest()
    ds = S.convert_labels(m_raw.prefix, str(root / "datasets" / "d"))
    assert ds.counts["det_train_images"] == 2 and ds.counts["rec_test_words"] == 2
    label = (root / "datasets" / "d" / "det" / "train_label.txt").read_text().splitlines()[0]
    assert label.startswith("det/train/images/img_1.jpg\t") and json.loads(label.split("\t", 1)[1])
    stats = S.validate_dataset(ds.prefix, 0.0)
    assert stats["error_ratio"] == 0.0 and stats["rec_train_lines"] == 4.0
    lm = S.build_rec_lmdb(ds.prefix, str(root / "datasets" / "d-lmdb"))
    assert lm.counts["train_samples"] == 4 and lm.counts["test_samples"] == 2


def test_validate_fails_above_threshold(store: tuple[Path, Path], tmp_path: Path) -> None:
    root, raw = store
    ds = S.convert_labels(S.ingest(str(raw), str(root)).prefix, str(tmp_path / "bad"))
    label = tmp_path / "bad" / "rec" / "train_label.txt"
    label.write_text(label.read_text() + "rec/train/missing.png\tabc\n")
    from ocr_core.storage.manifest import sync_up

    sync_up(tmp_path / "bad", str(tmp_path / "bad2"), quiet=True)
    with pytest.raises(DataError, match="bad label lines"):
        S.validate_dataset(str(tmp_path / "bad2"), 0.0)
    assert S.validate_dataset(str(tmp_path / "bad2"), 0.2)["error_ratio"] == pytest.approx(1 / 10)
    del ds


def test_publish_and_pointer(tmp_path: Path) -> None:
    from ocr_core.storage.manifest import sync_up

    reg = str(tmp_path / "reg")
    assert S.production_pointer(reg, "m") is None
    for part in ("det", "rec"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "model.onnx").write_bytes(part.encode())
        sync_up(tmp_path / part, str(tmp_path / "src" / part), kind="onnx-model", quiet=True,
                extra={"onnx": "model.onnx"})
    ptr = S.publish({p: str(tmp_path / "src" / p) for p in ("det", "rec")}, reg, "m", "v1", {"hmean": 0.5})
    assert S.production_pointer(reg, "m") == ptr
    assert (tmp_path / "reg" / "models" / "m" / "v1" / "rec" / "model.onnx").read_bytes() == b"rec"


def test_evaluate_models_puts_foreign_rec_configs_on_the_staged_lmdb(store: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """An off-the-shelf rec checkpoint whose own config reads SimpleDataSet label files that do not
    exist here (as the imported PP-OCRv3 rec does) is evaluated on the staged LMDB test split."""
    import copy

    from ocr_core.config import load_config, public_config
    from ocr_core.engine.checkpoint import save_checkpoint
    from ocr_core.engine.program import load_charset, wire_rec_heads
    from ocr_core.modeling import build_model
    from ocr_core.storage.manifest import sync_up
    from tests.integration.det_fixtures import ROOT

    root, raw = store
    ds = S.convert_labels(S.ingest(str(raw), str(root)).prefix, str(tmp_path / "d"))
    lm = S.build_rec_lmdb(ds.prefix, str(tmp_path / "d-lmdb"))
    cfg = load_config(ROOT / "configs/rec/rec_icdar15_train.yml")
    assert cfg["Eval"]["dataset"]["name"] == "SimpleDataSet"
    charset = load_charset(cfg)
    assert charset is not None
    wire_rec_heads(cfg, len(charset) + 1)
    model = build_model(copy.deepcopy(cfg["Architecture"]))
    save_checkpoint(tmp_path / "ots" / "model.pt", {
        "model": model.state_dict(), "architecture": cfg["Architecture"], "model_type": "rec",
        "config": public_config(cfg), "charset": None, "epoch": 0, "global_step": 0})
    ots = sync_up(tmp_path / "ots", str(tmp_path / "ots-pub"), kind="model", quiet=True,
                  extra={"checkpoint": "model.pt"})
    results = S.evaluate_models("rec", lm.prefix, {"off_the_shelf": ots.prefix})
    assert set(results["off_the_shelf"]) >= {"acc", "norm_edit_dis"}
    assert 0.0 <= results["off_the_shelf"]["acc"] <= 1.0
