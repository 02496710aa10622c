"""``--service-account``: runs and recurring runs ask KFP to run their pods as a named account (#15).

Checked against the fake KFP API server (``tests/pipeline/fake_kfp.py``, answers checked against
kfp-server-api's models): what ``ocrflow pipeline submit`` / ``schedule`` send. Whether KFP then
starts the workflow's pods under that account is KFP's part and needs a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.pipeline.fake_kfp import FakeKFP

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "base"


def _launcher_account() -> str:
    """The launcher's ServiceAccount in manifests/base (the name the docs tell users to pass)."""
    return next(yaml.safe_load_all((MANIFESTS / "serviceaccount.yaml").read_text()))["metadata"]["name"]


def test_submit_sends_the_runs_service_account() -> None:
    from ocr_core.cli import main

    account = _launcher_account()
    assert account == "ocrflow-trainer"
    with FakeKFP() as fake:
        rc = main(["pipeline", "submit", "--host", fake.url, "--experiment", "ocr", "--run-name", "sa",
                   "--service-account", account, "-p", "raw_data_uri=s3://ocrflow/incoming/v1"])
    assert rc == 0
    (run,) = fake.posts("runs")
    assert run["service_account"] == account
    assert run["display_name"] == "sa" and run["runtime_config"]["parameters"] == {
        "raw_data_uri": "s3://ocrflow/incoming/v1"}
    assert account not in json.dumps(run["pipeline_spec"])  # a property of the run, not of the compiled DAG
    assert fake.runs[next(iter(fake.runs))]["service_account"] == account  # echoed back like the API server


def test_submit_without_the_flag_leaves_kfps_default() -> None:
    from ocr_core.cli import main

    with FakeKFP() as fake:
        assert main(["pipeline", "submit", "--pipeline", "retrain", "--host", fake.url, "--experiment", "ocr",
                     "-p", "raw_data_uri=s3://ocrflow/incoming/v1"]) == 0
    (run,) = fake.posts("runs")
    assert not run.get("service_account")  # the API server then uses its default (pipeline-runner, default-editor)


@pytest.mark.parametrize("pipeline", ["retrain", "train"])
def test_schedule_sends_the_recurring_runs_service_account(pipeline: str) -> None:
    from ocr_core.cli import main

    account = _launcher_account()
    with FakeKFP() as fake:
        rc = main(["pipeline", "schedule", "--host", fake.url, "--experiment", "ocr", "--job-name", "nightly",
                   "--cron", "0 2 * * *", "--no-catchup", "--pipeline", pipeline, "--service-account", account,
                   "-p", "raw_data_uri=s3://ocrflow/incoming/latest"])
    assert rc == 0
    (job,) = fake.posts("recurringruns")
    assert job["service_account"] == account
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == f"ocr-{pipeline}-pipeline"
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}} and job["mode"] == "ENABLE"


def test_the_library_functions_take_it_too() -> None:
    from pipelines.schedule import create_schedule
    from pipelines.submit import submit

    with FakeKFP() as fake:
        submit(fake.url, "ocr", {"raw_data_uri": "s3://b/raw"}, service_account="team-a.runner")
        create_schedule(fake.url, "ocr", "j", "@daily", {"raw_data_uri": "s3://b/raw"}, service_account="runner-2")
    assert fake.posts("runs")[0]["service_account"] == "team-a.runner"
    assert fake.posts("recurringruns")[0]["service_account"] == "runner-2"


@pytest.mark.parametrize("action", ["submit", "schedule"])
@pytest.mark.parametrize("bad", ["Ocrflow-Trainer", "ocrflow_trainer", "-trainer", "trainer-", "a" * 254,
                                 "system:serviceaccount:ocrflow:ocrflow-trainer"])
def test_a_name_kubernetes_refuses_is_one_line_and_exit_2(action: str, bad: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from ocr_core.cli import main

    extra = ["--job-name", "j", "--cron", "@daily"] if action == "schedule" else []
    with FakeKFP() as fake:
        rc = main(["pipeline", action, "--host", fake.url, "--experiment", "ocr", *extra,
                   f"--service-account={bad}", "-p", "raw_data_uri=s3://b/raw"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "ServiceAccount name" in err, err
    assert fake.requests == []  # refused before anything is sent
