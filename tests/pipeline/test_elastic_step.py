"""Elastic training steps (#16 item 3b): the DAG's ``min_workers`` -> the PyTorchJob's ``elasticPolicy``.

The job each training step submits is built here exactly as ``run_workers(launcher="kubernetes")``
builds it and checked with the launcher tests' own offline validator (the kept CRD schema + the
webhook rules, ``components.launcher.validate``); the policy is compared with the one
``ocrflow launch --elastic`` prints.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.launcher.validate import validate_pytorchjob
from components.steps import train as T
from ocr_core.errors import ConfigError
from ocr_core.storage.manifest import sync_up
from ocr_core.storage.uri import join_uri

DET_CONFIG = "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml"
REC_CONFIG = "pipelines/configs/ch_PP-OCRv3_rec_ctc_lmdb.yml"
PROGRAM = T.worker_program("/opt/ocrflow/cfg.yml", ["Global.epoch_num=2"], T.stage_plan("det", "s3://b/d"),
                           "s3://b/runs/k/det_finetune")


def _job(**kw: Any) -> dict[str, Any]:
    kw.setdefault("name", "ocrflow-det-finetune-0123abcd")
    kw.setdefault("gpus", 0)
    return T.training_job(PROGRAM, namespace="ocrflow", secret="ocrflow-objectstore", **kw)


def _cli_policy(elastic: str) -> dict[str, Any]:
    """The elasticPolicy ``ocrflow launch --elastic MIN:MAX --dry-run`` prints."""
    from components.launcher.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["-c", "cfg.yml", "--name", "el", "--namespace", "ocrflow", "--elastic", elastic,
                     "--dry-run"]) == 0
    return yaml.safe_load(out.getvalue())["spec"]["elasticPolicy"]


def test_min_workers_2_of_3_builds_a_valid_elastic_job() -> None:
    job = _job(workers=3, min_workers=2)
    assert validate_pytorchjob(job) == []
    spec = job["spec"]
    assert spec["elasticPolicy"]["minReplicas"] == 2 and spec["elasticPolicy"]["maxReplicas"] == 3
    assert spec["elasticPolicy"]["rdzvBackend"] == "c10d"
    assert spec["elasticPolicy"] == _cli_policy("2:3")  # the launcher's own policy, maxRestarts default included
    assert spec["elasticPolicy"]["maxRestarts"] == 3
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2  # workers is the maximum, Master included
    assert spec["nprocPerNode"] == "1"  # the launcher's elastic setting, not the operator's "auto"
    for rtype in ("Master", "Worker"):
        (c,) = spec["pytorchReplicaSpecs"][rtype]["template"]["spec"]["containers"]
        assert c["command"] == ["torchrun", *PROGRAM]  # the rendezvous assigns the ranks
        env = {e["name"]: e for e in c["env"]}
        assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"]["value"] == "1"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "ocrflow-objectstore"


def test_min_workers_0_is_todays_fixed_size_job() -> None:
    job = _job(workers=3)
    assert validate_pytorchjob(job) == []
    assert "elasticPolicy" not in job["spec"] and "nprocPerNode" not in job["spec"]
    (c,) = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", *PROGRAM]
    assert job == _job(workers=3, min_workers=0)
    assert T.elastic_policy(0, 3) is None and T.elastic_policy(0, 1) is None


def test_a_wider_elastic_range() -> None:
    job = _job(workers=5, min_workers=2, gpus=1)
    assert validate_pytorchjob(job) == []
    assert job["spec"]["elasticPolicy"] == _cli_policy("2:5")
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 4


BAD = [
    (3, -1, "min_workers must be >= 0"),
    (3, 4, "min_workers=4 is more than workers=3"),
    (3, 3, "min_workers=3 equals workers"),
    (2, 2, "min_workers=2 equals workers"),
    (1, 1, "min_workers=1 needs workers >= 2"),
    (1, 2, "min_workers=2 needs workers >= 2"),
    (0, 1, "min_workers=1 needs workers >= 2"),
]


@pytest.mark.parametrize(("workers", "min_workers", "needle"), BAD)
def test_bad_combinations_are_refused_naming_the_parameter(workers: int, min_workers: int, needle: str,
                                                           tmp_path: Path) -> None:
    from pipelines.ocr_train_pipeline import check_arguments

    with pytest.raises(ConfigError, match=needle):
        T.check_elastic(workers, min_workers)
    with pytest.raises(ConfigError, match=needle):  # before any run starts
        check_arguments({"raw_data_uri": "x", "workers": workers, "min_workers": min_workers})
    with pytest.raises(ConfigError, match=needle):  # the train step itself, on a cluster
        T.launch_training_step(DET_CONFIG, [], T.stage_plan("det", str(tmp_path / "nowhere")),
                               str(tmp_path / "store"), "det_finetune", launcher="kubernetes", workers=workers,
                               min_workers=min_workers)
    assert not (tmp_path / "store").exists()
    for launcher in T.LAUNCHERS:  # every launcher refuses them, not only kubernetes
        with pytest.raises(ConfigError, match=needle):
            T.run_workers(PROGRAM, launcher=launcher, workers=workers, gpus=0, name="ocrflow-x",
                          min_workers=min_workers)


def test_good_combinations_pass_the_argument_checks() -> None:
    from pipelines.ocr_train_pipeline import check_arguments

    check_arguments({"raw_data_uri": "x"})  # the defaults: workers 1, min_workers 0
    check_arguments({"raw_data_uri": "x", "workers": 3, "min_workers": 2})
    check_arguments({"raw_data_uri": "x", "workers": 2, "min_workers": 1})
    check_arguments({"raw_data_uri": "x", "workers": 4, "min_workers": 0})


# ------------------------------------------------------------------------ through the train step
class Submitted(Exception):
    """Raised by the fake ``launch_and_wait`` once it has the job (nothing runs)."""


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from components.launcher import client

    jobs: list[dict[str, Any]] = []

    def fake_launch_and_wait(job: dict[str, Any], *a: object, **k: object) -> None:
        jobs.append(job)
        raise Submitted(job["metadata"]["name"])

    monkeypatch.setattr(client, "launch_and_wait", fake_launch_and_wait)
    monkeypatch.setenv("OCRFLOW_NAMESPACE", "ocrflow")
    return jobs


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    """A run root (local-directory store) holding one published dataset prefix."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "det").mkdir()
    (src / "det" / "train_label.txt").write_text("img.jpg\t[]\n")
    root = str(tmp_path / "store")
    data = join_uri(root, "datasets", "d")
    sync_up(src, data, quiet=True)
    return root, data


def _step(store: tuple[str, str], submitted: list[dict[str, Any]], overrides: list[str] = (),
          config: str = DET_CONFIG, model_type: str = "det", **kw: Any) -> tuple[dict[str, Any], list[str]]:
    root, data = store
    kw.setdefault("gpus", 0)
    with pytest.raises(Submitted):
        T.launch_training_step(config, list(overrides), T.stage_plan(model_type, data), root, f"{model_type}_step",
                               launcher="kubernetes", **kw)
    job = submitted[-1]
    (c,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    cmd = c["command"]
    return job, cmd[cmd.index("-o") + 1:] if "-o" in cmd else []


def test_train_step_submits_the_elastic_job_with_step_checkpoints(store: tuple[str, str],
                                                                  submitted: list[dict[str, Any]],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ocrflow.pipeline")
    job, opts = _step(store, submitted, ["Global.seed=3"], workers=3, min_workers=2)
    assert validate_pytorchjob(job) == []
    assert job["spec"]["elasticPolicy"] == _cli_policy("2:3")
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    assert job["metadata"]["namespace"] == "ocrflow"
    assert f"Global.save_step_interval={T.ELASTIC_SAVE_STEP_INTERVAL}" in opts and "Global.seed=3" in opts
    assert T.ELASTIC_SAVE_STEP_INTERVAL == 1000
    assert "Global.save_step_interval=1000" in caplog.text  # the default applied is logged


def test_the_steps_own_save_step_interval_wins(store: tuple[str, str], submitted: list[dict[str, Any]]) -> None:
    _, opts = _step(store, submitted, ["Global.save_step_interval=7"], workers=3, min_workers=2)
    assert [o for o in opts if o.startswith("Global.save_step_interval")] == ["Global.save_step_interval=7"]
    _, opts = _step(store, submitted, ["Global.save_step_interval=null"], workers=3, min_workers=1)
    assert [o for o in opts if o.startswith("Global.save_step_interval")] == ["Global.save_step_interval=null"]


def test_a_config_that_sets_save_step_interval_keeps_it(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(yaml.safe_dump({"Global": {"save_step_interval": 50, "epoch_num": 1}}))
    assert T.with_step_checkpoints(str(cfg), ["Global.seed=3"]) == ["Global.seed=3"]
    assert T.with_step_checkpoints(DET_CONFIG, ["Global.seed=3"]) == ["Global.seed=3",
                                                                      "Global.save_step_interval=1000"]


def test_min_workers_0_keeps_the_step_command_and_content_key(store: tuple[str, str],
                                                             submitted: list[dict[str, Any]]) -> None:
    """Existing runs are unchanged: no elasticPolicy, no added override, the same job name (content key)."""
    job, opts = _step(store, submitted, ["Global.seed=3"], workers=3)
    assert "elasticPolicy" not in job["spec"] and validate_pytorchjob(job) == []
    assert opts == ["Global.seed=3", "Global.use_gpu=false"]
    root, data = store
    plan = T.stage_plan("det", data)
    from ocr_core.storage.manifest import read_manifest

    key = T.train_key(DET_CONFIG, opts, plan, {"data": read_manifest(data).digest()}, 0, 3)
    assert job["metadata"]["name"] == f"ocrflow-det-step-{key[:8]}"
    elastic, _ = _step(store, submitted, ["Global.seed=3"], workers=3, min_workers=2)
    assert elastic["metadata"]["name"] != job["metadata"]["name"]  # step checkpoints: another run prefix


@pytest.mark.parametrize("model_type", ["det", "rec"])
def test_the_steps_model_type_sizes_its_pods(store: tuple[str, str], submitted: list[dict[str, Any]],
                                             model_type: str) -> None:
    """run_workers passes the stage plan's model type into PyTorchJobSpec.model_type: a rec step's GPU pods
    get rec sizing (fewer cores per GPU), a det step's det sizing, elastic or not."""
    from components.launcher.resources import replica_resources

    config = REC_CONFIG if model_type == "rec" else DET_CONFIG
    want = replica_resources(1, model_type=model_type)
    for min_workers in (0, 2):
        job, _ = _step(store, submitted, config=config, model_type=model_type, workers=3, gpus=1,
                       min_workers=min_workers)
        assert validate_pytorchjob(job) == []
        for rtype in ("Master", "Worker"):
            (c,) = job["spec"]["pytorchReplicaSpecs"][rtype]["template"]["spec"]["containers"]
            assert c["resources"]["requests"]["cpu"] == want.cpu, (rtype, min_workers)
            assert c["resources"]["limits"]["memory"] == want.memory
            assert c["command"][c["command"].index("--model-type") + 1] == model_type
    assert replica_resources(1, model_type="rec").cpu != replica_resources(1, model_type="det").cpu
