"""Scheduled retraining: the new-data decision, the retrain DAG's shape, `pipeline schedule`, the skip path.

The training DAG itself is not run here (test_local_run.py does that); the skip path runs the
retrain pipeline end to end under kfp.local against the embedded S3 server.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from tests.pipeline.fake_kfp import FakeKFP
from tests.pipeline.test_compile_submit import structure

GOLDEN = Path(__file__).parent / "golden" / "retrain_pipeline.yaml"
TRAIN_TASKS = {"ingest", "convert-labels", "validate-data", "build-lmdb", "build-shards", "train", "export-start",
               "export-start-2", "condition-branches-1", "adopt-model", "evaluate", "evaluate-2", "condition-branches-4",
               "condition-branches-7", "adopt-model-2", "adopt-model-3", "system-eval", "gate"}
# the det recipes' steps sit in condition-branches-1's two branches, each export in its own onnx | tensorrt pair


def _raw(root: Path, text: str = "hello") -> Path:
    """A tiny raw dataset in the ICDAR layout (contents do not matter to the digest logic)."""
    (root / "rec" / "train").mkdir(parents=True)
    (root / "rec" / "train" / "gt.txt").write_text(f"word_1.png, \"{text}\"\n")
    (root / "rec" / "train" / "word_1.png").write_bytes(b"\x89PNG fake")
    return root


def _fake_model(root: Path, registry: str, part: str) -> str:
    from ocr_core.storage.manifest import sync_up

    (root / part).mkdir(parents=True)
    (root / part / "model.onnx").write_bytes(part.encode())
    return sync_up(root / part, f"{registry}/runs/x/{part}", kind="onnx-model", quiet=True).prefix


def _publish_production(tmp: Path, registry: str, digest: str | None, version: str = "v1") -> dict:
    """A "production" model published through the real ``publish`` step (fake det/rec prefixes)."""
    from components.steps.registry import publish

    models = {p: _fake_model(tmp / f"models-{version}", registry, p) for p in ("det", "rec")}
    data = {"uri": "s3://x/raw", "digest": digest} if digest else None
    return publish(models, registry, "ppocrv3", version, {"hmean": 0.5}, data=data)


# ------------------------------------------------------------------------------ decision logic
def test_decision_same_changed_and_no_production(tmp_path: Path) -> None:
    from components.steps.data import check_new_data, dataset_digest

    registry = str(tmp_path / "registry")
    raw = _raw(tmp_path / "raw")
    first = check_new_data(str(raw), registry, "ppocrv3")
    assert first["is_new"] and first["production_digest"] == "" and "no production model" in first["reason"]

    _publish_production(tmp_path, registry, first["incoming_digest"])
    same = check_new_data(str(raw), registry, "ppocrv3")
    assert not same["is_new"] and same["production_digest"] == same["incoming_digest"] == first["incoming_digest"]
    assert same["production_version"] == "v1" and same["pointer_fingerprint"]

    (raw / "rec" / "train" / "gt.txt").write_text('word_1.png, "hallo"\n')  # a relabelled word
    changed = check_new_data(str(raw), registry, "ppocrv3")
    assert changed["is_new"] and changed["incoming_digest"] != first["incoming_digest"]
    assert changed["production_digest"] == first["incoming_digest"]
    assert dataset_digest(str(raw)) == changed["incoming_digest"]


def test_pointer_without_recorded_digest_means_new(tmp_path: Path) -> None:
    from components.steps.data import new_data_decision

    assert new_data_decision("d" * 64, None)[0]
    assert new_data_decision("d" * 64, {"version": "v0", "parts": {}})[0]  # published before digests existed
    assert not new_data_decision("d" * 64, {"version": "v0", "data": {"digest": "d" * 64}})[0]
    assert new_data_decision("d" * 64, {"version": "v0", "data": {"digest": "e" * 64}})[0]


def test_local_digest_equals_ingested_manifest_digest(tmp_path: Path) -> None:
    """A local directory hashes to the digest ``ingest`` publishes it with (published URI likewise)."""
    from components.steps.data import dataset_digest, ingest

    raw = _raw(tmp_path / "raw")
    published = ingest(str(raw), str(tmp_path / "store"))
    assert dataset_digest(str(raw)) == published.digest() == dataset_digest(published.prefix)


def test_record_trained_data_only_after_a_publish(tmp_path: Path) -> None:
    from components.steps.data import check_new_data
    from components.steps.registry import production_pointer, record_trained_data

    registry = str(tmp_path / "registry")
    _publish_production(tmp_path, registry, None, "v1")
    seen = check_new_data(str(_raw(tmp_path / "raw")), registry, "ppocrv3")
    # the gate kept the champion: the pointer is the one the check saw -> untouched
    assert not record_trained_data(registry, "ppocrv3", "raw", seen["incoming_digest"], seen["pointer_fingerprint"])
    assert "data" not in production_pointer(registry, "ppocrv3")
    # this run published v2 -> the pointer records what v2 was trained on
    _publish_production(tmp_path, registry, None, "v2")
    assert record_trained_data(registry, "ppocrv3", "raw", seen["incoming_digest"], seen["pointer_fingerprint"])
    pointer = production_pointer(registry, "ppocrv3")
    assert pointer["version"] == "v2" and pointer["data"] == {"uri": "raw", "digest": seen["incoming_digest"]}
    assert not check_new_data(str(tmp_path / "raw"), registry, "ppocrv3")["is_new"]


# ------------------------------------------------------------------------- compiled structure
@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipelines.schedule import compile_named

    return compile_named("retrain", tmp_path_factory.mktemp("c") / "r.yaml").read_text()


def test_retrain_golden_structure(compiled: str) -> None:
    assert structure(compiled) == structure(GOLDEN.read_text()), \
        "retrain structure changed: `ocrflow pipeline compile --pipeline retrain --out " \
        "tests/pipeline/golden/retrain_pipeline.yaml` if intended"


def test_condition_wraps_the_training_dag(compiled: str) -> None:
    spec = next(yaml.safe_load_all(compiled))
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"check-new-data", "condition-1"}
    cond = root["condition-1"]
    assert cond["dependentTasks"] == ["check-new-data"]
    # the operand must be the task's "Output": kfp.local silently skips a branch on a named output
    assert "pipelinechannel--check-new-data-Output" in cond["triggerPolicy"]["condition"]
    assert cond["triggerPolicy"]["condition"].endswith("== true")
    inner = spec["components"][cond["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"ocr-train-pipeline", "record-trained-data"}
    assert inner["record-trained-data"]["dependentTasks"] == ["ocr-train-pipeline"]
    assert inner["record-trained-data"]["inputs"]["parameters"]["data_digest"] == \
        {"componentInputParameter": "pipelinechannel--check-new-data-incoming_digest"}
    train = spec["components"][inner["ocr-train-pipeline"]["componentRef"]["name"]]["dag"]["tasks"]
    assert TRAIN_TASKS <= set(train)  # the whole training DAG (publish sits in its own gate condition)
    assert not root["check-new-data"]["cachingOptions"].get("enableCache", False)
    s = structure(compiled)
    assert s["name"] == "ocr-retrain-pipeline" and s["secrets"] == ["ocrflow-objectstore"]
    platform = list(yaml.safe_load_all(compiled))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(platform) == len(spec["deploymentSpec"]["executors"])  # nested tasks keep their secret


def test_parameters_match_the_training_pipeline() -> None:
    from pipelines.ocr_train_pipeline import ocr_train_pipeline
    from pipelines.retrain_pipeline import ocr_retrain_pipeline

    def params(p: object) -> list:
        return [(n, v.annotation, v.default) for n, v in inspect.signature(p.pipeline_func).parameters.items()]

    assert params(ocr_retrain_pipeline) == params(ocr_train_pipeline)


# ------------------------------------------------------------------------------ schedule command
def test_schedule_against_fake_server(tmp_path: Path) -> None:
    from ocr_core.cli import main

    with FakeKFP() as fake:
        rc = main(["pipeline", "schedule", "--host", fake.url, "--experiment", "ocr", "--job-name", "nightly-retrain",
                   "--cron", "0 0 2 * * *", "--max-concurrency", "1", "--no-catchup",
                   "-p", "raw_data_uri=s3://ocrflow/incoming/latest", "-p", "launcher=kubernetes"])
    assert rc == 0
    posts = {r["path"]: r["body"] for r in fake.requests if r["method"] == "POST"}
    job = posts["/apis/v2beta1/recurringruns"]
    assert job["display_name"] == "nightly-retrain"
    assert job["experiment_id"] == next(iter(fake.experiments))
    assert fake.experiments[job["experiment_id"]]["display_name"] == "ocr"
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True and job["mode"] == "ENABLE"
    spec = job["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "ocr-retrain-pipeline"
    assert "ocrflow-objectstore" in json.dumps(spec["platform_spec"])
    assert job["runtime_config"]["parameters"] == {"raw_data_uri": "s3://ocrflow/incoming/latest",
                                                   "launcher": "kubernetes"}


def test_schedule_turns_a_crontab_line_into_kfp_cron(capsys: pytest.CaptureFixture[str]) -> None:
    """5 fields (crontab) -> second 0 prepended, said on stderr, submitted; nonsense -> one line, exit 2."""
    from ocr_core.cli import main

    with FakeKFP() as fake:
        rc = main(["pipeline", "schedule", "--host", fake.url, "--experiment", "ocr", "--job-name", "j",
                   "--cron", "30 2 * * MON-FRI", "--no-catchup", "-p", "raw_data_uri=s3://b/raw"])
    out, err = capsys.readouterr()
    assert rc == 0 and json.loads(out.strip().splitlines()[-1])["cron"] == "0 30 2 * * MON-FRI"
    assert "cron '30 2 * * MON-FRI' -> KFP cron '0 30 2 * * MON-FRI'" in err and "no catch-up" in err
    assert fake.posts("recurringruns")[0]["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * MON-FRI"}}
    for bad, why in [("every night", "has 2 field(s); give 5"), ("0 0 25 * * *", "hour field '25': 25 is outside 0-23"),
                     ("0 0 2 * * * *", "has 7 field(s)"), ("0 2 * 13 *", "month field '13'"),
                     ("*/0 2 * * *", "step '0' must be a positive number")]:
        rc = main(["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--experiment", "ocr", "--job-name", "j",
                   "--cron", bad])
        err = capsys.readouterr().err
        assert rc == 2 and why in err and len(err.strip().splitlines()) == 1, (bad, err)


def test_compile_and_submit_retrain(tmp_path: Path) -> None:
    from ocr_core.cli import main

    out = tmp_path / "dist" / "ocr_retrain_pipeline.yaml"
    assert main(["pipeline", "compile", "--pipeline", "retrain", "--out", str(out)]) == 0
    assert next(yaml.safe_load_all(out.read_text()))["pipelineInfo"]["name"] == "ocr-retrain-pipeline"
    with FakeKFP() as fake:
        assert main(["pipeline", "submit", "--pipeline", "retrain", "--host", fake.url, "--experiment", "ocr",
                     "-p", "raw_data_uri=s3://ocrflow/incoming/v1"]) == 0
    run = next(r["body"] for r in fake.requests if r["path"] == "/apis/v2beta1/runs")
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "ocr-retrain-pipeline"


# ------------------------------------------------------------------------------ kfp.local, end to end
@pytest.fixture()
def local_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from ocr_core.storage.embedded import EmbeddedS3

    monkeypatch.setenv("OCRFLOW_WORK_DIR", str(tmp_path / "work"))
    with EmbeddedS3(tmp_path / "s3") as s3:
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        yield s3


def _run_retrain(raw_uri: str, root: Path, env: dict, steps: dict[str, str]) -> None:
    """Run the retrain pipeline under kfp.local (raises when a task fails); fills ``steps``: task -> status."""
    from pipelines.local_run import StepTimer
    from pipelines.retrain_pipeline import run_retrain_local
    from tests.pipeline.tiny import tiny_params

    timer = StepTimer()
    try:
        run_retrain_local(tiny_params(raw_uri, "s3://ocrflow"), root, env, timer=timer)
    finally:
        steps.update({k: v["status"] for k, v in timer.steps.items()})


def test_skip_path_under_kfp_local(tmp_path: Path, local_s3) -> None:
    """Production was trained on digest D; the incoming data has digest D -> only the check runs."""
    from components.steps.registry import production_pointer
    from ocr_core.storage.client import open_store
    from ocr_core.storage.manifest import sync_up

    raw_m = sync_up(_raw(tmp_path / "raw"), "s3://ocrflow/incoming/raw", kind="raw-dataset", quiet=True)
    before = _publish_production(tmp_path, "s3://ocrflow", raw_m.digest())
    steps: dict[str, str] = {}
    _run_retrain(raw_m.prefix, tmp_path / "root", local_s3.env, steps)  # no exception: the run succeeded
    assert steps == {"check-new-data": "SUCCESS", "condition-1": "SKIPPED"}  # the new-data branch
    assert production_pointer("s3://ocrflow", "ppocrv3") == before
    assert not open_store("s3://ocrflow").list("s3://ocrflow/datasets/"), "convert ran although nothing is new"


def test_new_data_enters_the_training_dag(tmp_path: Path, local_s3) -> None:
    """The other branch (guards the skip test against a condition that never fires): production was
    trained on other data -> the nested training DAG starts; the fake images then fail validation."""
    from ocr_core.storage.manifest import sync_up

    _publish_production(tmp_path, "s3://ocrflow", "0" * 64)
    raw_m = sync_up(_raw(tmp_path / "raw"), "s3://ocrflow/incoming/raw", kind="raw-dataset", quiet=True)
    steps: dict[str, str] = {}
    with pytest.raises(RuntimeError, match="validate-data"):
        _run_retrain(raw_m.prefix, tmp_path / "root", local_s3.env, steps)
    assert steps["check-new-data"] == "SUCCESS" and steps["ingest"] == "SUCCESS"
    assert steps["validate-data"] == "FAILURE" and "record-trained-data" not in steps
