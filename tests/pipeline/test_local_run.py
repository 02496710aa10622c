"""The whole DAG under kfp.local (SubprocessRunner, no venv) against an embedded S3 server.

This one runs the ``cml`` detection recipe (DML teacher from ``det_teacher_init_uri`` -> extract ->
CML student -> extract, joined by ``dsl.OneOf``) with tiny networks and no start model, once per
``data_format``: ``files`` (each train step stages the dataset) and ``shards`` (``build shards``
writes shard sets, the train steps stream them); ``test_demo_flow.py`` runs the default ``finetune``
recipe from the imported PP-OCRv3 weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components._kfp_io import HTML_MAX_BYTES
from pipelines.sample_data import make_raw_dataset
from tests.pipeline.tiny import tiny_params, tiny_teacher_init


@pytest.mark.parametrize("data_format", ["files", "shards"])
def test_whole_dag_locally_cml_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_format: str) -> None:
    from components.steps.registry import production_pointer
    from ocr_core.storage.embedded import EmbeddedS3
    from ocr_core.storage.manifest import read_manifest, sync_up
    from pipelines.local_run import StepTimer, display_names, run_pipeline_locally

    raw = make_raw_dataset(tmp_path / "raw", det_train=2, det_test=1, rec_train=4, rec_test=2)
    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    with EmbeddedS3(tmp_path / "s3") as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        raw_m = sync_up(raw, "s3://ocrflow/incoming/raw", kind="raw-dataset", quiet=True)
        init = tiny_teacher_init(tmp_path, "s3://ocrflow/weights/tiny-teacher-init")
        timer = StepTimer()
        run_pipeline_locally(tiny_params(raw_m.prefix, "s3://ocrflow", det_recipe="cml", det_teacher_init_uri=init,
                                         data_format=data_format), tmp_path / "root", s3.env, timer=timer)
        names = display_names()
        done = {names.get(k, k): v["status"] for k, v in timer.steps.items()}
        assert done.pop("det-finetune") == "SKIPPED"  # the other branch of det_recipe
        for m in ("rec", "det"):  # export_format=onnx: the TensorRT branches do not run
            assert done.pop(f"export {m} (tensorrt, GPU)") == "SKIPPED"
        assert all(v == "SUCCESS" for v in done.values()), done
        assert {"build shards", "train det teacher (DML)", "extract teacher", "train det student (CML)", "extract student",
                "det model (fine-tuned | CML student)", "export det", "export rec", "system eval (det+rec)",
                "gate", "publish"} <= set(done)
        assert "fine-tune det" not in done
        # the teacher started from det_teacher_init_uri (both DML roles), lr scaled to the global batch
        from ocr_core.storage.client import open_store

        teacher_uri = json.loads(next((tmp_path / "root").rglob("train-3/model")).read_text())["uri"]
        log = open_store(teacher_uri).get_bytes(teacher_uri.rstrip("/") + "/train.log").decode()
        assert log.count("pretrained weights from") == 2 and "stage/init/model.pt" in log
        assert "x 2/64 (global batch / Optimizer.lr.reference_batch_size)" in log
        # shards: every train step streamed build-shards' sets and staged no dataset; files: the opposite
        shards = json.loads(next((tmp_path / "root").rglob("build-shards/shards")).read_text())
        if data_format == "shards":
            assert shards["kind"] == "shard-sets" and shards["uri"].endswith("-shards")
            assert set(shards["extra"]["sets"]) == {"det/train", "det/test", "rec/train", "rec/test"}
        else:
            assert shards["uri"] == "" and shards["extra"] == {"data_format": "files"}
            assert not [o for o in open_store("s3://ocrflow").list("s3://ocrflow/datasets/") if "-shards/" in o.uri]
        for task, model_type in (("train", "rec"), ("train-3", "det"), ("train-4", "det")):
            run_uri = json.loads(next((tmp_path / "root").rglob(f"{task}/model")).read_text())["uri"]
            cfg = open_store(run_uri).get_bytes(run_uri + "/config.yml").decode()
            if data_format == "shards":
                assert f"data_dir: {shards['uri']}/{model_type}/train" in cfg and "name: ShardDataSet" in cfg, task
                assert "stage/data" not in cfg and "label_file_list" not in cfg, task
            else:
                assert "stage/data" in cfg and "ShardDataSet" not in cfg, task
            # each train task's HTML artifact is its run's report, self-contained
            report = next((tmp_path / "root").rglob(f"{task}/report")).read_text()
            assert "OCRFlow training report" in report and "<img src=\"data:image/jpeg;base64," in report, task
            assert len(report.encode()) <= HTML_MAX_BYTES and "<script" not in report and "<link" not in report
        pointer = production_pointer("s3://ocrflow", "ppocrv3")
        assert pointer is not None and set(pointer["parts"]) == {"det", "rec"}
        det = read_manifest(pointer["parts"]["det"]["uri"])
        assert det.extra["parity"]["passed"] and {f.path for f in det.files} >= {"model.onnx", "model.pt"}
        assert "hmean" in pointer["metrics"]
        # the training DAG records what it trained on: the next check_new_data sees no new data
        assert pointer["data"] == {"uri": raw_m.prefix, "digest": raw_m.digest()}
        from components.steps.data import new_data_decision

        assert new_data_decision(raw_m.digest(), pointer)[0] is False
        assert json.dumps(pointer).count(s3.env["AWS_SECRET_ACCESS_KEY"]) == 0
        # no start model (trained from scratch): the gate published on the candidate alone
        gate = json.loads(next((tmp_path / "root").rglob("gate/executor_output.json")).read_text())
        meta = gate["artifacts"]["decision"]["artifacts"][0]["metadata"]
        assert meta["champion"] == "none" and meta["publish"] == 1.0 and "champion_hmean" not in meta
