"""Real training as a PyTorchJob: the pipeline's worker command on two "nodes" of the fake cluster.

The real ``kubernetes`` client talks to ``fake_apiserver.FakeCluster`` (API server + operator
simulator that runs each replica as a local process with the operator's env); data and
checkpoints live in an embedded SeaweedFS S3 server, whose keys reach the replicas through a
Secret (``secretKeyRef``), as on a cluster. The job is what ``components.steps.train.run_workers``
builds: ``build_pytorchjob(PyTorchJobSpec(name, worker_program(...)))`` with the Master + 1 Worker replicas training
a tiny det model with gloo.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from components.launcher.pytorchjob import PyTorchJobSpec, build_pytorchjob
from components.steps.common import find_config_file
from components.steps.data import DET_LABEL
from components.steps.train import FAULT_ENV, stage_plan, worker_program
from tests.integration.det_fixtures import make_det_split

CONFIG = "configs/det/det_mv3_db.yml"
SECRET = "mlpipeline-minio-artifact"  # KFP's object-store Secret (keys accesskey/secretkey)
EPOCHS, TRAIN_IMAGES, BATCH = 3, 4, 1
STEPS_PER_EPOCH = TRAIN_IMAGES // 2 // BATCH  # DistributedSampler: half of the images per rank
# The shipped random augmentations stay on (flip/rotate/resize, random crop): every rank's RNG state
# is in the checkpoint, so the killed-and-resumed run must still match the uninterrupted one exactly.
TINY = [
    f"Global.epoch_num={EPOCHS}", "Global.use_gpu=false", "Global.print_batch_step=1",
    "Global.eval_batch_step=[0, 100000]", "Global.save_epoch_step=1000", "Global.seed=7",
    "Train.dataset.transforms.EastRandomCropData.size=[64, 64]", f"Train.loader.batch_size_per_card={BATCH}", "Train.loader.num_workers=0",
    "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 64, limit_type: max}", "Eval.loader.num_workers=0",
]


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from ocr_core.storage.embedded import EmbeddedS3

    with EmbeddedS3(tmp_path_factory.mktemp("s3"), bucket="ocrflow") as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env.items():  # this process reads manifests/checkpoints back
            mp.setenv(key, value)
        yield server


@pytest.fixture(scope="module")
def data_uri(s3, tmp_path_factory) -> str:
    """A published det dataset in the pipeline's layout (``det/{train,test}_label.txt``)."""
    from ocr_core.storage.manifest import sync_up

    root = tmp_path_factory.mktemp("det-data")
    (root / "det").mkdir()
    for split, num, seed in (("train", TRAIN_IMAGES, 1), ("test", 2, 2)):
        label = make_det_split(root / split, num, seed, size=(64, 64))
        lines = [f"{split}/{line}" for line in label.read_text().splitlines() if line.strip()]
        (root / DET_LABEL.format(split=split)).write_text("\n".join(lines) + "\n")
    return sync_up(root, "s3://ocrflow/datasets/det-tiny", kind="dataset", quiet=True).prefix


@pytest.fixture(scope="module")
def secret_cluster(cluster, s3):
    cluster.secrets[("default", SECRET)] = {"accesskey": s3.env["AWS_ACCESS_KEY_ID"],
                                           "secretkey": s3.env["AWS_SECRET_ACCESS_KEY"]}
    return cluster


def _job(name: str, data_uri: str, out_uri: str, work: Path, overrides: list[str] = (),
         env: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    """What ``run_workers(launcher="kubernetes")`` builds, plus per-test env."""
    program = worker_program(find_config_file(CONFIG), [*TINY, *overrides], stage_plan("det", data_uri), out_uri)
    pod_env = {"OCRFLOW_S3_ENDPOINT": os.environ["OCRFLOW_S3_ENDPOINT"], "AWS_REGION": os.environ["AWS_REGION"],
               "OMP_NUM_THREADS": "1", "OCRFLOW_WORK_DIR": str(work), **(env or {})}
    return build_pytorchjob(PyTorchJobSpec(name, program, workers=2, env=pod_env, secret_name=SECRET, **kw))


def _launch(cluster, job, **kw):
    from components.launcher.client import launch_and_wait

    lines: list[str] = []
    return launch_and_wait(job, cluster.api_client(), log_sink=lines.append, poll_s=0.2, timeout_s=120,
                           watch_timeout_s=5, **kw), lines


def _pod_log(cluster, pod: str, previous: bool = False) -> list[str]:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client()).read_namespaced_pod_log(
        pod, "default", container="pytorch", previous=previous).splitlines()


def _final_checkpoint(out_uri: str, dest: Path) -> tuple[Any, dict[str, Any]]:
    from ocr_core.storage.manifest import read_manifest, sync_down

    manifest = read_manifest(out_uri)
    sync_down(out_uri, dest, quiet=True)
    ck = torch.load(dest / manifest.extra["checkpoint"], map_location="cpu", weights_only=False)
    return manifest, ck


@pytest.fixture(scope="module")
def straight(secret_cluster, data_uri, tmp_path_factory):
    """One uninterrupted 2-node run: the reference for the resumed one."""
    work = tmp_path_factory.mktemp("straight")
    out_uri = "s3://ocrflow/runs/k8s-straight/train_det"
    result, lines = _launch(secret_cluster, _job("train-straight", data_uri, out_uri, work))
    manifest, ck = _final_checkpoint(out_uri, work / "final")
    return {"result": result, "lines": lines, "manifest": manifest, "ck": ck, "out_uri": out_uri, "work": work}


# --- tests ---------------------------------------------------------------------------------------
def test_two_node_training_job_succeeds_and_publishes_the_checkpoint(straight, secret_cluster):
    result, lines, manifest, ck = straight["result"], straight["lines"], straight["manifest"], straight["ck"]
    assert result.state == "Succeeded"
    steps = EPOCHS * STEPS_PER_EPOCH
    # the master's log (streamed through the launcher): gloo world of 2, every epoch, the upload
    assert any(re.search(rf"training det: {EPOCHS} epochs x {STEPS_PER_EPOCH} steps, batch {BATCH}/rank, world 2",
                         line) for line in lines), lines
    assert any(f"done: global_step {steps}" in line for line in lines), lines
    # both replicas got the operator's env and the Secret's keys, and the worker trained too
    for pod, rank in (("train-straight-master-0", "0"), ("train-straight-worker-0", "1")):
        assert (secret_cluster.envs[pod]["WORLD_SIZE"], secret_cluster.envs[pod]["RANK"]) == ("2", rank)
    from kubernetes import client

    pods = client.CoreV1Api(secret_cluster.api_client()).list_namespaced_pod(
        "default", label_selector="training.kubeflow.org/job-name=train-straight").items
    assert {p.metadata.name: p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {
        "train-straight-master-0": 0, "train-straight-worker-0": 0}
    # rank 1 logs nothing (rank 0 logs for the job) but leaves its own summary in its node's scratch
    (summary,) = straight["work"].glob("ocrflow-worker1-*/summary.json")
    assert json.loads(summary.read_text())["global_step"] == steps
    # the checkpoint + manifest in S3 under the run prefix
    assert manifest.kind == "model" and manifest.prefix == straight["out_uri"]
    files = {f.path for f in manifest.files}
    assert {"latest.pt", "summary.json", "config.yml"} <= files, files
    assert manifest.extra["global_step"] == steps
    assert (ck["global_step"], ck["epoch"]) == (steps, EPOCHS)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert {"hmean", "precision", "recall"} <= set(manifest.extra["best_metric"])


def test_killed_worker_is_restarted_and_resumes_to_the_same_weights(straight, secret_cluster, data_uri,
                                                                    tmp_path):
    out_uri = "s3://ocrflow/runs/k8s-killed/train_det"
    job = _job("train-killed", data_uri, out_uri, tmp_path, env={FAULT_ENV: "1:1"})  # rank 1 after epoch 1
    result, lines = _launch(secret_cluster, job)
    assert result.state == "Succeeded"
    assert any(c["type"] == "Restarting" for c in result.conditions)
    # the Worker was SIGKILLed right after epoch 1's latest.pt was uploaded ...
    first_worker = _pod_log(secret_cluster, "train-killed-worker-0", previous=True)
    assert f"[rank 1] {FAULT_ENV}: SIGKILL after epoch 1 (latest.pt uploaded)" in first_worker
    # ... the Master's collective failed with it; the operator restarted both (exit 137 / non-zero)
    from kubernetes import client

    pods = client.CoreV1Api(secret_cluster.api_client()).list_namespaced_pod(
        "default", label_selector="training.kubeflow.org/job-name=train-killed").items
    status = {p.metadata.name: p.status.container_statuses[0] for p in pods}
    assert {n: s.restart_count for n, s in status.items()} == {"train-killed-master-0": 1, "train-killed-worker-0": 1}
    assert status["train-killed-worker-0"].last_state.terminated.exit_code == 137
    assert status["train-killed-master-0"].last_state.terminated.exit_code != 0
    first_master = "\n".join(_pod_log(secret_cluster, "train-killed-master-0", previous=True))
    # gloo's error varies with timing ("Connection closed by peer" / a read error), both name the peer
    assert re.search(r"RuntimeError: \[[^\]]*gloo[^\]]*\] .*remote worker", first_master), first_master[-2000:]
    # the restarted replicas staged in again, found latest.pt under the run prefix and resumed
    resumed = [line for line in lines if "resumed from" in line]
    assert any(f"resuming from {out_uri}/latest.pt" in line for line in lines), lines
    assert resumed and f"next epoch 2, global_step {STEPS_PER_EPOCH}" in resumed[-1], resumed
    second_worker = _pod_log(secret_cluster, "train-killed-worker-0")
    assert any(f"[rank 1] resuming from {out_uri}/latest.pt" in line for line in second_worker), second_worker
    # same end as the uninterrupted run: step, epoch, and bit-identical weights
    manifest, ck = _final_checkpoint(out_uri, tmp_path / "final")
    ref = straight["ck"]
    assert manifest.extra["global_step"] == straight["manifest"].extra["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert (ck["global_step"], ck["epoch"]) == (ref["global_step"], ref["epoch"])
    assert ck["model"].keys() == ref["model"].keys()
    diff = {k: (ck["model"][k].double() - ref["model"][k].double()).abs().max().item()
            for k in ref["model"] if ref["model"][k].is_floating_point()}
    assert max(diff.values()) == 0.0, sorted(diff.items(), key=lambda kv: -kv[1])[:5]
    assert manifest.extra["best_metric"]["hmean"] == straight["manifest"].extra["best_metric"]["hmean"]


def test_broken_config_fails_the_launcher_with_the_config_error(secret_cluster, data_uri, tmp_path):
    from components.launcher.client import PyTorchJobFailed

    job = _job("train-broken", data_uri, "s3://ocrflow/runs/k8s-broken/train_det", tmp_path,
               overrides=["Global.epoch_numm=1"], backoff_limit=1)
    with pytest.raises(PyTorchJobFailed) as info:
        _launch(secret_cluster, job)
    err = info.value
    assert err.reason == "PyTorchJobFailed" and "backoff limit" in err.message
    assert err.pod in ("train-broken-master-0", "train-broken-worker-0")
    assert any("Global.epoch_numm: unknown key 'epoch_numm'" in line for line in err.log_tail), err.log_tail
    assert "epoch_numm" in str(err)
