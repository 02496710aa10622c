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
    # the exported pair: each export's two format branches joined into an adopt-model task
    assert {"adopt-model-2", "adopt-model-3"} <= set(t["system-eval"]["after"])
    assert t["adopt-model-2"]["after"] == ["condition-branches-4"]
    assert t["adopt-model-3"]["after"] == ["condition-branches-7"]
    assert t["adopt-model"]["after"] == ["condition-branches-1"]
    assert "adopt-model" in t["evaluate-2"]["after"] and "evaluate-2" in t["condition-branches-7"]["after"]
    assert "evaluate" in t["condition-branches-4"]["after"]
    assert t["gate"]["after"] == ["system-eval"]
    assert set(sub["comp-condition-2"]) == {"train-2"}  # det_recipe == finetune: one step
    assert sub["comp-condition-2"]["train-2"]["display"] == "fine-tune det"
    cml = sub["comp-condition-3"]
    assert cml["train-3"]["display"] == "train det teacher (DML)" and cml["extract"]["after"] == ["train-3"]
    assert "extract" in cml["train-4"]["after"] and cml["extract-2"]["after"] == ["train-4"]
    assert "publish" in sub["comp-condition-10"]
    assert s["params"]["export_format"] == {"type": "STRING", "default": "onnx"}
    assert s["secrets"] == ["ocrflow-objectstore"]
    assert {"raw_data_uri", "epochs", "workers", "gpus", "launcher", "det_overrides"} <= set(s["params"])
    assert s["params"]["det_recipe"] == {"type": "STRING", "default": "finetune"}
    assert s["params"]["det_config"]["default"] == "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml"
    assert s["params"]["det_teacher_init_uri"] == {"type": "STRING", "default": ""}


def test_build_shards_feeds_every_training_step(compiled: str) -> None:
    """data_format (default files: today's staged dataset) goes to build-shards, after validation;
    every train task takes its shards artifact beside the dataset it stages when there are none.
    Eval and export keep reading the dataset (they never take shards)."""
    spec = next(yaml.safe_load_all(compiled))
    s, comps, root = structure(compiled), spec["components"], spec["root"]["dag"]["tasks"]
    assert s["params"]["data_format"] == {"type": "STRING", "default": "files"}
    shards = root["build-shards"]
    assert shards["dependentTasks"] == ["convert-labels", "validate-data"]
    assert shards["inputs"]["parameters"]["data_format"] == {"componentInputParameter": "data_format"}
    assert shards["taskInfo"]["name"] == "build shards" and shards["retryPolicy"]["maxRetryCount"] == 2
    trains = {name: t for dag in [root, *(c["dag"]["tasks"] for c in comps.values() if "dag" in c)]
              for name, t in dag.items() if t["componentRef"]["name"].startswith("comp-train")}
    assert sorted(trains) == ["train", "train-2", "train-3", "train-4"]
    for name, t in trains.items():
        src = t["inputs"]["artifacts"]["shards"]
        assert src.get("taskOutputArtifact", {}).get("producerTask") == "build-shards" or \
            src == {"componentInputArtifact": "pipelinechannel--build-shards-shards"}, name
    users = sorted(n for dag in [root, *(c["dag"]["tasks"] for c in comps.values() if "dag" in c)]
                   for n, t in dag.items() if "pipelinechannel--build-shards-shards" in str(t.get("inputs"))
                   or "'build-shards'" in str(t.get("inputs")))
    assert users == ["condition-2", "condition-3", "condition-branches-1", "train", "train-2", "train-3", "train-4"]
    for comp in ("comp-train", "comp-train-2"):  # the training report is an HTML artifact of every train task
        assert comps[comp]["outputDefinitions"]["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"


def test_min_workers_reaches_every_training_step(compiled: str) -> None:
    """min_workers (default 0: fixed-size jobs, as before) goes from the pipeline parameter to every train
    task, rec and each det recipe's, which make their PyTorchJobs elastic when 0 < min_workers < workers."""
    spec = next(yaml.safe_load_all(compiled))
    s, comps, root = structure(compiled), spec["components"], spec["root"]["dag"]["tasks"]
    assert s["params"]["min_workers"] == {"type": "NUMBER_INTEGER", "default": 0.0}
    assert s["params"]["workers"] == {"type": "NUMBER_INTEGER", "default": 1.0}
    trains = {name: t for dag in [root, *(c["dag"]["tasks"] for c in comps.values() if "dag" in c)]
              for name, t in dag.items() if t["componentRef"]["name"].startswith("comp-train")}
    assert sorted(trains) == ["train", "train-2", "train-3", "train-4"]
    for name, t in trains.items():
        src = t["inputs"]["parameters"]["min_workers"]["componentInputParameter"]
        assert src in ("min_workers", "pipelinechannel--min_workers"), name
        comp = comps[t["componentRef"]["name"]]["inputDefinitions"]["parameters"]["min_workers"]
        assert comp == {"defaultValue": 0.0, "isOptional": True, "parameterType": "NUMBER_INTEGER"}


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


def test_export_format_branches_request_a_gpu_only_for_tensorrt(compiled: str) -> None:
    """export_format == onnx: the default image, no accelerator; else the TensorRT image and one GPU.
    Both branches publish through the same task code; dsl.OneOf joins their URI for adopt-model."""
    from components.export import GPU_RESOURCE, TENSORRT_IMAGE
    from components.launcher.pytorchjob import DEFAULT_IMAGE

    spec = next(yaml.safe_load_all(compiled))
    comps, executors = spec["components"], spec["deploymentSpec"]["executors"]
    for branches, adopt, model in (("condition-branches-4", "adopt-model-2", "rec"),
                                   ("condition-branches-7", "adopt-model-3", "det")):
        dag = comps[f"comp-{branches}"]["dag"]
        (onnx_name, onnx), (trt_name, trt) = sorted(dag["tasks"].items())
        is_onnx = "inputs.parameter_values['pipelinechannel--export_format'] == 'onnx'"
        assert onnx["triggerPolicy"]["condition"] == is_onnx and trt["triggerPolicy"]["condition"] == f"!({is_onnx})"
        runs = {}
        for branch in (onnx_name, trt_name):
            (task_name, task), = comps[f"comp-{branch}"]["dag"]["tasks"].items()
            fmt = task["inputs"]["parameters"]["format"]
            assert fmt == {"componentInputParameter": "pipelinechannel--export_format"}
            container = executors[comps[task["componentRef"]["name"]]["executorLabel"]]["container"]
            runs[branch] = (task["taskInfo"]["name"], container["image"], container.get("resources"))
        assert runs[onnx_name] == (f"export {model}", DEFAULT_IMAGE, None)
        assert runs[trt_name] == (f"export {model} (TensorRT, GPU)", TENSORRT_IMAGE, {"accelerator": {
            "count": "1", "resourceCount": "1", "resourceType": GPU_RESOURCE, "type": GPU_RESOURCE}})
        oneof = dag["outputs"]["parameters"][f"pipelinechannel--{branches}-oneof-1"]["valueFromOneof"]
        assert [x["producerSubtask"] for x in oneof["parameterSelectors"]] == [onnx_name, trt_name]
        uri = spec["root"]["dag"]["tasks"][adopt]["inputs"]["parameters"]["uri"]["taskOutputParameter"]
        assert uri["producerTask"] == branches
    # nothing else asks for a GPU or the TensorRT image
    gpu = sorted(k for k, e in executors.items() if e["container"].get("resources"))
    assert gpu == sorted(k for k, e in executors.items() if e["container"]["image"] == TENSORRT_IMAGE) \
        == ["exec-export-2", "exec-export-4"]


def test_check_arguments_rejects_a_bad_export_format() -> None:
    from ocr_core.errors import ConfigError
    from pipelines.ocr_train_pipeline import check_arguments

    for fmt in ("onnx", "tensorrt", "both"):
        check_arguments({"raw_data_uri": "s3://x/raw", "export_format": fmt})
    with pytest.raises(ConfigError,
                       match="export_format: export format must be one of onnx, tensorrt, both; got 'trt'"):
        check_arguments({"raw_data_uri": "s3://x/raw", "export_format": "trt"})


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
