"""The whole DAG under kfp.local (SubprocessRunner, no venv) against an embedded S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.sample_data import make_raw_dataset
from tests.pipeline.tiny import tiny_params


def test_whole_dag_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components._steps import production_pointer
    from ocr_core.storage.embedded import EmbeddedS3
    from ocr_core.storage.manifest import read_manifest, sync_up
    from pipelines.local_run import StepTimer, display_names, run_local

    raw = make_raw_dataset(tmp_path / "raw", det_train=2, det_test=1, rec_train=4, rec_test=2)
    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    with EmbeddedS3(tmp_path / "s3") as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        raw_m = sync_up(raw, "s3://ocrflow/incoming/raw", kind="raw-dataset", quiet=True)
        timer = StepTimer()
        run_local(tiny_params(raw_m.prefix, "s3://ocrflow"), tmp_path / "root", s3.env, timer=timer)
        names = display_names()
        done = {names.get(k, k): v["status"] for k, v in timer.steps.items()}
        assert all(v == "SUCCESS" for v in done.values()), done
        assert {"train det teacher (DML)", "extract student", "export det", "export rec", "system eval (det+rec)",
                "gate", "publish"} <= set(done)
        pointer = production_pointer("s3://ocrflow", "ppocrv3")
        assert pointer is not None and set(pointer["parts"]) == {"det", "rec"}
        det = read_manifest(pointer["parts"]["det"]["uri"])
        assert det.extra["parity"]["passed"] and {f.path for f in det.files} >= {"model.onnx", "model.pt"}
        assert "hmean" in pointer["metrics"]
        # the training DAG records what it trained on: the next check_new_data sees no new data
        assert pointer["data"] == {"uri": raw_m.prefix, "digest": raw_m.digest()}
        from components._steps import new_data_decision

        assert new_data_decision(raw_m.digest(), pointer)[0] is False
        assert json.dumps(pointer).count(s3.env["AWS_SECRET_ACCESS_KEY"]) == 0
