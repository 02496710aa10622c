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
    t, sub = s["tasks"], s["sub_dags"]
    assert t["ingest"]["after"] == [] and {"det_recipe", "det_teacher_init_uri"} <= set(t["ingest"]["inputs"])
    assert {"export-start", "export-start-2"} <= set(t["system-eval"]["after"])  # the start pair
    assert {"export", "export-2"} <= set(t["system-eval"]["after"])
    assert t["adopt-model"]["after"] == ["condition-branches-1"]
    assert "adopt-model" in t["evaluate-2"]["after"] and "evaluate-2" in t["export-2"]["after"]
    assert t["gate"]["after"] == ["system-eval"]
    assert set(sub["comp-condition-2"]) == {"train-2"}  # det_recipe == finetune: one step
    assert sub["comp-condition-2"]["train-2"]["display"] == "fine-tune det"
    cml = sub["comp-condition-3"]
    assert cml["train-3"]["display"] == "train det teacher (DML)" and cml["extract"]["after"] == ["train-3"]
    assert "extract" in cml["train-4"]["after"] and cml["extract-2"]["after"] == ["train-4"]
    assert "publish" in sub["comp-condition-4"]
    assert s["secrets"] == ["ocrflow-objectstore"]
    assert {"raw_data_uri", "epochs", "workers", "gpus", "launcher", "det_overrides"} <= set(s["params"])
    assert s["params"]["det_recipe"] == {"type": "STRING", "default": "finetune"}
    assert s["params"]["det_config"]["default"] == "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml"
    assert s["params"]["det_teacher_init_uri"] == {"type": "STRING", "default": ""}


def test_det_recipe_branches_and_oneof(compiled: str) -> None:
    """dsl.If/dsl.Else on det_recipe; dsl.OneOf of the model URI each branch returns feeds adopt-model."""
    spec = next(yaml.safe_load_all(compiled))
    branches = spec["components"]["comp-condition-branches-1"]["dag"]
    cond = {n: task["triggerPolicy"]["condition"] for n, task in branches["tasks"].items()}
    assert cond == {"condition-2": "inputs.parameter_values['pipelinechannel--det_recipe'] == 'finetune'",
                    "condition-3": "!(inputs.parameter_values['pipelinechannel--det_recipe'] == 'finetune')"}
    oneof = branches["outputs"]["parameters"]["pipelinechannel--condition-branches-1-oneof-1"]["valueFromOneof"]
    assert [(x["producerSubtask"], x["outputParameterKey"]) for x in oneof["parameterSelectors"]] == [
        ("condition-2", "pipelinechannel--train-2-Output"), ("condition-3", "pipelinechannel--extract-2-Output")]
    adopt = spec["root"]["dag"]["tasks"]["adopt-model"]["inputs"]["parameters"]["uri"]["taskOutputParameter"]
    assert adopt == {"outputParameterKey": "pipelinechannel--condition-branches-1-oneof-1",
                     "producerTask": "condition-branches-1"}
    comps = spec["components"]
    finetune = comps["comp-condition-2"]["dag"]["tasks"]["train-2"]["inputs"]["parameters"]
    assert finetune["config"] == {"componentInputParameter": "pipelinechannel--det_config"}
    assert finetune["init_uri"] == {"componentInputParameter": "pipelinechannel--det_pretrained_uri"}
    assert finetune["init_keys"]["runtimeValue"]["constant"] == ["Global.pretrained_model"]
    teacher = comps["comp-condition-3"]["dag"]["tasks"]["train-3"]["inputs"]["parameters"]
    assert teacher["init_uri"] == {"componentInputParameter": "pipelinechannel--det_teacher_init_uri"}
    assert teacher["init_keys"]["runtimeValue"]["constant"] == ["Architecture.Models.Student.pretrained",
                                                               "Architecture.Models.Student2.pretrained"]
    student = comps["comp-condition-3"]["dag"]["tasks"]["train-4"]["inputs"]["parameters"]
    for step in (teacher, student):  # PaddleOCR's DML/CML lr is for 64 images: scaled to the global batch
        assert step["recipe_overrides"]["runtimeValue"]["constant"] == ["Optimizer.lr.reference_batch_size=64"]


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
