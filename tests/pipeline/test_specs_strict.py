"""Our YAML and our fake KFP server against the schemas Kubeflow itself maintains.

* Every compiled pipeline (both DAGs, compiled now, and the checked-in goldens) parses strictly
  (unknown fields are errors) into kfp-pipeline-spec's ``PipelineSpec``; the platform document
  into ``PlatformSpec`` and each of its executors into kfp-kubernetes' ``KubernetesExecutorConfig``.
* Every answer of ``tests/pipeline/fake_kfp.py`` is checked against kfp-server-api's v2beta1 models
  (the fake does it itself before answering); here the checker is shown to catch drift.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from tests.pipeline.fake_kfp import FakeKFP, check_against_model, validate_runtime_parameters

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    from pipelines.schedule import compile_named

    out = tmp_path_factory.mktemp("compiled")
    docs = {f"compiled {p}": list(yaml.safe_load_all(compile_named(p, out / f"{p}.yaml").read_text()))
            for p in ("train", "retrain")}
    docs.update({f"golden {f.name}": list(yaml.safe_load_all(f.read_text())) for f in sorted(GOLDEN.glob("*.yaml"))})
    return docs


def parse_strict(pipeline_doc: dict, platform_doc: dict | None) -> tuple[object, dict[str, object]]:
    """(PipelineSpec, executor name -> KubernetesExecutorConfig); raises json_format.ParseError on any unknown field."""
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(pipeline_doc, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    # deploymentSpec is a google.protobuf.Struct in PipelineSpec: parse it again into its own message
    json_format.ParseDict(pipeline_doc["deploymentSpec"], pipeline_spec_pb2.PipelineDeploymentConfig(),
                          ignore_unknown_fields=False)
    executors: dict[str, object] = {}
    if platform_doc is not None:
        platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
        # executors are google.protobuf.Struct in PlatformSpec: parse each one again into the kubernetes message
        raw = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(raw) == set(platform.platforms["kubernetes"].deployment_spec.executors)
        for name, cfg in raw.items():
            executors[name] = json_format.ParseDict(cfg, k8s_pb2.KubernetesExecutorConfig(),
                                                    ignore_unknown_fields=False)
    return spec, executors


def test_every_pipeline_parses_strictly(documents: dict[str, list[dict]]) -> None:
    from kfp.pipeline_spec import pipeline_spec_pb2

    assert len(documents) == 4, sorted(documents)
    for label, docs in documents.items():
        assert len(docs) == 2, f"{label}: expected the pipeline spec + the kubernetes platform document"
        spec, executors = parse_strict(docs[0], docs[1])
        assert spec.pipeline_info.name in ("ocr-train-pipeline", "ocr-retrain-pipeline"), label
        assert set(executors) == set(docs[0]["deploymentSpec"]["executors"]), label  # every executor has its k8s config
        for name, cfg in executors.items():  # what the platform document is for: the object-store Secret
            assert [s.secret_name for s in cfg.secret_as_env] == ["ocrflow-objectstore"], (label, name)
            assert {e.env_var for s in cfg.secret_as_env for e in s.key_to_env} == \
                {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, (label, name)
        # the parameter form the UI builds comes from these root input definitions
        params, kinds = spec.root.input_definitions.parameters, pipeline_spec_pb2.ParameterType
        assert params["raw_data_uri"].parameter_type == kinds.STRING
        assert params["workers"].parameter_type == kinds.NUMBER_INTEGER
        assert params["workers"].default_value.number_value == 1


def test_strict_parse_catches_an_unknown_field(documents: dict[str, list[dict]]) -> None:
    """The controls: one misspelled key in the pipeline spec, or in one executor's kubernetes config, fails."""
    docs = documents["compiled train"]
    bad_spec = copy.deepcopy(docs[0])
    bad_spec["root"]["dag"]["tasks"]["ingest"]["cachingOption"] = {"enableCache": False}  # cachingOptions
    with pytest.raises(json_format.ParseError, match="cachingOption"):
        parse_strict(bad_spec, docs[1])
    bad_exec = copy.deepcopy(docs[0])
    bad_exec["deploymentSpec"]["executors"]["exec-ingest"]["container"]["cmd"] = ["python"]  # command
    with pytest.raises(json_format.ParseError, match="cmd"):
        parse_strict(bad_exec, docs[1])
    bad_platform = copy.deepcopy(docs[1])
    executor = next(iter(bad_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()))
    executor["secretAsEnv"][0]["keyToEnvs"] = executor["secretAsEnv"][0].pop("keyToEnv")
    with pytest.raises(json_format.ParseError, match="keyToEnvs"):
        parse_strict(docs[0], bad_platform)


def test_model_checker_catches_drift() -> None:
    """What the fake used to answer (``pipeline_store_type``; ``max_concurrency`` as a JSON number) is caught."""
    assert check_against_model({"multi_user": False, "pipeline_store": "database"}, "V2beta1GetHealthzResponse") == []
    errs = check_against_model({"multi_user": False, "pipeline_store_type": "database"}, "V2beta1GetHealthzResponse")
    assert len(errs) == 1 and "pipeline_store_type: unknown field" in errs[0]
    job = {"recurring_run_id": "r", "display_name": "j", "max_concurrency": 1, "mode": "ENABLE",
           "trigger": {"cron_schedule": {"cron": "0 0 2 * * *"}}, "created_at": "2026-01-01T00:00:00Z"}
    errs = check_against_model(job, "V2beta1RecurringRun")
    assert errs == ["V2beta1RecurringRun.max_concurrency: expected JSON str, got int 1"]
    assert check_against_model({**job, "max_concurrency": "1"}, "V2beta1RecurringRun") == []
    errs = check_against_model({"run_id": "x", "state": "FAILURE", "created_at": "yesterday"}, "V2beta1Run")
    assert any("'FAILURE' is not a V2beta1RuntimeState" in e for e in errs)
    assert any("created_at: 'yesterday' is not an RFC 3339 time" in e for e in errs)
    errs = check_against_model({"trigger": {"cron_schedule": {"cron": "x", "crontab": "y"}}}, "V2beta1RecurringRun")
    assert errs == ["V2beta1RecurringRun.trigger.cron_schedule.crontab: unknown field of V2beta1CronSchedule "
                    "(fields: ['cron', 'end_time', 'start_time'])"]


def test_runtime_parameter_check_mirrors_the_api_server(documents: dict[str, list[dict]]) -> None:
    spec = documents["compiled train"][0]
    assert validate_runtime_parameters(spec, {"raw_data_uri": "s3://b/raw", "workers": 2}) is None
    assert "raw_data_uri is not optional" in validate_runtime_parameters(spec, {"workers": 2})
    assert "input parameter workers requires type NUMBER_INTEGER" in \
        validate_runtime_parameters(spec, {"raw_data_uri": "s3://b/raw", "workers": "2"})
    assert "not required by pipeline: worker" in validate_runtime_parameters(spec, {"raw_data_uri": "r", "worker": 2})


def test_every_fake_answer_fits_the_server_models(tmp_path: Path) -> None:
    """Drive every endpoint the SDK and CLI use through kfp.Client; the fake checks each answer on the way out."""
    from kfp import Client

    from pipelines.schedule import compile_named

    package = str(compile_named("retrain", tmp_path / "r.yaml"))
    with FakeKFP(run_state="FAILED") as fake:
        client = Client(host=fake.url, existing_token="t0ken")
        assert client.get_kfp_healthz().pipeline_store == "database"
        exp = client.create_experiment("ocr")
        assert client.create_experiment("ocr").experiment_id == exp.experiment_id  # found, not created twice
        assert client.get_experiment(experiment_id=exp.experiment_id).display_name == "ocr"
        run = client.create_run_from_pipeline_package(package, {"raw_data_uri": "s3://b/raw"}, experiment_name="ocr")
        assert client.get_run(run.run_id).state == "FAILED"
        job = client.create_recurring_run(exp.experiment_id, "nightly", cron_expression="0 0 2 * * *",
                                          pipeline_package_path=package, params={"raw_data_uri": "s3://b/raw"},
                                          max_concurrency=1, no_catchup=True, enabled=True)
        assert job.max_concurrency == "1" and job.status == "ENABLED" and job.trigger.cron_schedule.cron == "0 0 2 * * *"
        assert client.get_recurring_run(job.recurring_run_id).display_name == "nightly"
        assert [j.display_name for j in client.list_recurring_runs().recurring_runs] == ["nightly"]
        import kfp_server_api

        with pytest.raises(kfp_server_api.ApiException) as refused:
            client.create_run_from_pipeline_package(package, {"raw_data_uri": "r", "workers": "2"},
                                                    experiment_name="ocr")
        assert refused.value.status == 400 and "input parameter workers" in refused.value.body
    assert fake.errors == []
    assert len(fake.posts("experiments")) == 1 and len(fake.posts("runs")) == 2
