"""Compiled YAML: golden structure, no credentials; submission against a fake KFP API server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.pipeline.fake_kfp import FakeKFP

GOLDEN = Path(__file__).parent / "golden" / "ocr_train_pipeline.yaml"


def structure(text: str) -> dict:
    """What must not change silently: tasks, their components and dependencies, parameters."""
    docs = list(yaml.safe_load_all(text))
    spec = docs[0]

    def tasks(dag: dict) -> dict:
        return {name: {"component": t["componentRef"]["name"], "display": t.get("taskInfo", {}).get("name"),
                       "after": sorted(t.get("dependentTasks", [])),
                       "inputs": sorted(t.get("inputs", {}).get("parameters") or {})
                       + sorted(t.get("inputs", {}).get("artifacts") or {})}
                for name, t in dag["tasks"].items()}

    comps = {name: tasks(c["dag"]) for name, c in spec["components"].items() if "dag" in c}
    params = {k: {"type": v["parameterType"], "default": v.get("defaultValue")}
              for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return {"name": spec["pipelineInfo"]["name"], "tasks": tasks(spec["root"]["dag"]), "sub_dags": comps,
            "params": params, "components": sorted(spec["components"]),
            "executors": sorted(spec["deploymentSpec"]["executors"]),
            "secrets": sorted({s["secretName"] for e in platform.values() for s in e.get("secretAsEnv", [])})}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipelines.submit import compile_pipeline

    return compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml").read_text()


def test_golden_structure(compiled: str) -> None:
    got, want = structure(compiled), structure(GOLDEN.read_text())
    assert got == want, "pipeline structure changed: `ocrflow pipeline compile --out " \
        "tests/pipeline/golden/ocr_train_pipeline.yaml` if intended"


def test_dag_shape(compiled: str) -> None:
    s = structure(compiled)
    t = s["tasks"]
    assert t["train-2"]["display"] == "train det teacher (DML)"
    assert t["extract"]["after"] == ["train-2"] and t["train-3"]["after"] == ["extract", "validate-data"] \
        or "extract" in t["train-3"]["after"]
    assert "extract-2" in t["evaluate-2"]["after"] and "evaluate-2" in t["export-2"]["after"]
    assert {"export", "export-2"} <= set(t["system-eval"]["after"])
    assert t["gate"]["after"] == ["system-eval"]
    assert "publish" in s["sub_dags"]["comp-condition-1"]
    assert s["secrets"] == ["ocrflow-objectstore"]
    assert {"raw_data_uri", "epochs", "workers", "gpus", "launcher", "det_overrides"} <= set(s["params"])


def test_compiled_yaml_has_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.storage.embedded import EmbeddedS3
    from pipelines.submit import compile_pipeline

    with EmbeddedS3() as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        text = compile_pipeline(tmp_path / "p.yaml").read_text()
        assert s3.env["AWS_SECRET_ACCESS_KEY"] not in text
        assert s3.env["AWS_ACCESS_KEY_ID"] not in text
        assert os.environ["AWS_ACCESS_KEY_ID"] == s3.access_key


def test_submit_to_fake_server(tmp_path: Path) -> None:
    from ocr_core.cli import main

    with FakeKFP() as fake:
        rc = main(["pipeline", "submit", "--host", fake.url, "--experiment", "ocr", "--run-name", "nightly",
                   "-p", "raw_data_uri=s3://ocrflow/incoming/v1", "-p", "epochs=3",
                   "-p", 'det_overrides=["Global.seed=3"]'])
    assert rc == 0
    posts = {r["path"]: r["body"] for r in fake.requests if r["method"] == "POST"}
    exp = posts["/apis/v2beta1/experiments"]
    assert exp["display_name"] == "ocr"
    run = posts["/apis/v2beta1/runs"]
    assert run["display_name"] == "nightly"
    assert run["experiment_id"] == next(iter(fake.experiments))
    body = run["pipeline_spec"]  # {pipeline_spec, platform_spec} when a kubernetes document exists
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "ocr-train-pipeline"
    assert "ocrflow-objectstore" in str(body["platform_spec"])
    assert run["runtime_config"]["parameters"] == {"raw_data_uri": "s3://ocrflow/incoming/v1", "epochs": 3,
                                                   "det_overrides": ["Global.seed=3"]}
