"""PyTorchJob builder, offline validator, CLI dry-run, and the launcher against a fake cluster."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from components.launcher.local import (
    LocalJobFailed,
    LocalJobTimeout,
    expand_k8s_vars,
    local_argv,
    operator_env,
    run_local_workers,
)
from components.launcher.pytorchjob import DEFAULT_IMAGE, PyTorchJobSpec, build_pytorchjob, train_program
from components.launcher.validate import validate_pytorchjob
from tests.k8s.conftest import wait_no_children

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = "tests/k8s/dist_worker.py"
MASTER = "spec.pytorchReplicaSpecs[Master]"
GOLDEN_ARGS = [
    "--dry-run", "-c", "configs/det/ch_PP-OCRv3_det_student.yml",
    "-o", "Global.epoch_num=50", "Global.metrics_port=9400",
    "--name", "ocr-det-student", "--namespace", "ocrflow", "--workers", "3", "--nproc-per-node", "1",
    "--secret", "mlpipeline-minio-artifact", "--run-id", "8f1c2d3e-0000-4000-8000-123456789abc",
    "--priority-class", "ocrflow-training", "--node-selector", "nvidia.com/gpu.present=true",
]


def _job(**kw):
    kw.setdefault("workers", 3)
    return build_pytorchjob(PyTorchJobSpec(kw.pop("name", "ocr-det"),
                                           train_program("configs/det/x.yml", ["Global.epoch_num=2"]), **kw))


def _containers(job, rtype="Master"):
    return job["spec"]["pytorchReplicaSpecs"][rtype]["template"]["spec"]["containers"]


# --- builder + validator -------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {},
    {"nproc_per_node": 2, "gpus_per_worker": 2, "secret_name": "mlpipeline-minio-artifact"},
    {"secret_name": "s3-env", "secret_keys": None, "shm_size": None, "metrics_port": None},
    {"elastic": {"min_replicas": 2, "max_replicas": 4, "max_restarts": 3, "rdzv_backend": "c10d"}},
    {"labels": {"pipelines.kubeflow.org/run_id": "8f1c2d3e-0000-4000-8000-123456789abc"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "node_selector": {"pool": "gpu"}, "priority_class": "ocrflow-training", "workers": 1},
])
def test_builder_output_passes_crd_schema_and_webhook(kw):
    job = _job(**kw)
    assert validate_pytorchjob(job) == []
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs.get("Worker", {"replicas": 0})["replicas"] == kw.get("workers", 3) - 1
    (c,) = _containers(job)
    assert c["name"] == "pytorch" and c["image"] == DEFAULT_IMAGE
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert specs["Master"]["restartPolicy"] == "OnFailure"


def test_builder_command_forms_and_resources():
    plain = _containers(_job())[0]
    assert plain["command"][:4] == ["python", "-m", "ocr_core.train", "--resume"]
    gpu = _job(gpus_per_worker=4, secret_name="mlpipeline-minio-artifact")
    c = _containers(gpu, "Worker")[0]
    assert gpu["spec"]["nprocPerNode"] == "4"  # one process per GPU, a string in the CRD
    assert c["command"][:3] == ["torchrun", "--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)"]
    assert c["command"][6:8] == ["-m", "ocr_core.train"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"]} == {
        "AWS_ACCESS_KEY_ID": "accesskey", "AWS_SECRET_ACCESS_KEY": "secretkey"}
    pod = gpu["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    # resources follow the GPUs (components/launcher/resources.py): 4 x 12 cores + 1 for the trainer,
    # 4 x (6144 + 12 x 512) Mi; /dev/shm = 4 GPUs x 12 workers x 512 Mi, inside the memory limit
    assert c["resources"]["requests"]["cpu"] == "49"
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"] == "49152Mi"
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "24576Mi"}}]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "ocrflow-replica"
    cpu = _containers(_job())[0]["resources"]  # a CPU replica: the small default
    assert cpu == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    elastic = _containers(_job(elastic={"max_replicas": 4}), "Worker")[0]
    assert elastic["command"][:2] == ["torchrun", "-m"]  # torchrun reads PET_* itself
    with pytest.raises(ValueError, match="DNS-1035"):
        _job(name="Bad_Name")


def _break(mutate):
    job = _job()
    mutate(job)
    return {(e.path, e.message) for e in validate_pytorchjob(job)}


@pytest.mark.parametrize("mutate, path, needle", [
    (lambda j: _containers(j)[0].update(name="main"), f"{MASTER}.template.spec.containers", "name pytorch"),
    (lambda j: j["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas=2), f"{MASTER}.replicas", "must be 1"),
    (lambda j: _containers(j, "Worker")[0].pop("image"),
     "spec.pytorchReplicaSpecs[Worker].template.spec.containers[0].image", "Required"),
    (lambda j: j["spec"]["pytorchReplicaSpecs"].update(master=j["spec"]["pytorchReplicaSpecs"].pop("Master")),
     "spec.pytorchReplicaSpecs[master]", "Unsupported"),
    (lambda j: j["spec"].update(nprocPerNodes="2"), "spec.nprocPerNodes", "not declared"),
    (lambda j: j["spec"]["runPolicy"].update(backoffLimit="3"), "spec.runPolicy.backoffLimit", "integer"),
    (lambda j: _containers(j)[0]["ports"][0].pop("containerPort"),
     f"{MASTER}.template.spec.containers[0].ports[0].containerPort", "Required"),
    (lambda j: (j["spec"].update(elasticPolicy={}), j["spec"]["pytorchReplicaSpecs"].pop("Worker")),
     "spec.pytorchReplicaSpecs[Worker]", "elastic policy"),
    (lambda j: j["metadata"].update(name="Ocr_Det"), "metadata.name", "DNS-1035"),
])
def test_invalid_variants_are_rejected_with_field_paths(mutate, path, needle):
    errors = _break(mutate)
    assert any(p == path and needle in m for p, m in errors), errors


# --- CLI -----------------------------------------------------------------------------------------
def test_dry_run_prints_the_golden_yaml():
    from components.launcher import cli

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(GOLDEN_ARGS) == 0
    golden = (HERE / "golden" / "pytorchjob_dry_run.yaml").read_text()
    assert out.getvalue() == golden
    assert validate_pytorchjob(yaml.safe_load(golden)) == []


def test_cli_rejects_bad_name(capsys):
    from components.launcher import cli

    assert cli.main(["--dry-run", "-c", "x.yml", "--name", "Bad_Name"]) == 2
    assert "DNS-1035" in capsys.readouterr().err


# --- env contract --------------------------------------------------------------------------------
def test_operator_env_and_kubelet_expansion():
    env = operator_env(3, 2, "127.0.0.1", 4000, 2)
    assert env == {"PYTHONUNBUFFERED": "1", "MASTER_PORT": "4000", "PET_MASTER_PORT": "4000",
                   "MASTER_ADDR": "127.0.0.1", "PET_MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "6", "RANK": "2",
                   "PET_NODE_RANK": "2", "PET_NPROC_PER_NODE": "2", "PET_NNODES": "3"}
    assert operator_env(2, 0, "h", 1)["WORLD_SIZE"] == "2"  # nprocPerNode defaults to "auto" -> x1
    assert expand_k8s_vars("--n=$(PET_NNODES) $(UNSET) $$(PET_NNODES)", env) == "--n=3 $(UNSET) $(PET_NNODES)"
    argv = local_argv(["torchrun", "--nnodes=$(PET_NNODES)", "-m", "x"], env, python="/py")
    assert argv == ["/py", "-m", "torch.distributed.run", "--nnodes=3", "-m", "x"]


def _env_line(lines):
    return json.loads(next(line for line in lines if line.startswith("ENV "))[4:])


# --- through the real kubernetes client against the fake cluster ---------------------------------
def _launch(cluster, job, **kw):
    from components.launcher.client import launch_and_wait

    lines: list[str] = []
    kw.setdefault("timeout_s", 90)
    kw.setdefault("watch_timeout_s", 1)
    return launch_and_wait(job, cluster.api_client(), log_sink=lines.append, poll_s=0.1, **kw), lines


def test_two_node_allreduce_succeeds_through_kubernetes_client(cluster):
    from kubernetes import client

    # --linger 2: the run outlasts a 1 s watch call whatever the machine's speed
    job = build_pytorchjob(PyTorchJobSpec("allreduce", [WORKER, "--linger", "2"], workers=2, namespace="ocr"))
    result, lines = _launch(cluster, job)
    assert result.state == "Succeeded"
    assert "rank 0/2 all_reduce sum=3" in lines and "rank 0/2 all_reduce sum=3" in result.log_tail
    assert _env_line(lines) == {"MASTER_ADDR": "127.0.0.1", "PET_MASTER_ADDR": "127.0.0.1",
                                "MASTER_PORT": cluster.envs["allreduce-master-0"]["MASTER_PORT"],
                                "PET_MASTER_PORT": cluster.envs["allreduce-master-0"]["MASTER_PORT"],
                                "WORLD_SIZE": "2", "RANK": "0", "PET_NODE_RANK": "0", "PET_NNODES": "2",
                                "PET_NPROC_PER_NODE": "auto", "PYTHONUNBUFFERED": "1"}
    core = client.CoreV1Api(cluster.api_client())
    worker_log = core.read_namespaced_pod_log("allreduce-worker-0", "ocr", container="pytorch").splitlines()
    assert _env_line(worker_log)["RANK"] == "1" and _env_line(worker_log)["PET_NODE_RANK"] == "1"
    assert "rank 1/2 all_reduce sum=3" in worker_log
    # the run outlasted one 1 s watch call: the wait re-watched instead of giving up
    watches = [p for m, p in cluster.requests if m == "GET" and p.endswith("/namespaces/ocr/pytorchjobs")]
    assert len(watches) >= 2


def test_failing_worker_fails_the_step_with_reason_and_log_tail(cluster):
    from components.launcher.client import PyTorchJobFailed

    job = build_pytorchjob(PyTorchJobSpec("failing", [WORKER, "--fail-rank", "1"], workers=2, backoff_limit=1))
    with pytest.raises(PyTorchJobFailed) as info:
        _launch(cluster, job)
    err = info.value
    assert err.reason == "PyTorchJobFailed"
    assert "reached the specified backoff limit" in err.message
    assert err.pod == "failing-worker-0"
    assert err.log_tail[-1] == "rank 1: cannot open shard s3://bucket/train-1.lmdb: NoSuchKey"
    assert "NoSuchKey" in str(err)


def test_killed_worker_is_restarted_under_on_failure(cluster):
    from kubernetes import client

    cluster.kill_once.add("restarted-worker-0")
    job = build_pytorchjob(PyTorchJobSpec("restarted", [WORKER], workers=2, backoff_limit=2))
    result, lines = _launch(cluster, job)
    assert result.state == "Succeeded" and "rank 0/2 all_reduce sum=3" in lines
    assert any(c["type"] == "Restarting" for c in result.conditions)
    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(
        "default", label_selector="training.kubeflow.org/job-name=restarted").items
    counts = {p.metadata.name: p.status.container_statuses[0].restart_count for p in pods}
    assert counts == {"restarted-master-0": 0, "restarted-worker-0": 1}
    last = next(p for p in pods if p.metadata.name == "restarted-worker-0").status.container_statuses[0]
    assert last.last_state.terminated.exit_code == 137


def _assert_deleted(cluster, name):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    assert ("DELETE", f"/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/{name}") in cluster.requests
    with pytest.raises(ApiException) as info:
        client.CustomObjectsApi(cluster.api_client()).get_namespaced_custom_object(
            "kubeflow.org", "v1", "default", "pytorchjobs", name)
    assert info.value.status == 404


def test_timeout_deletes_the_job(cluster):
    from components.launcher.client import PyTorchJobTimeout

    job = build_pytorchjob(PyTorchJobSpec("slow", [WORKER, "--sleep", "60"], workers=2))
    with pytest.raises(PyTorchJobTimeout):
        _launch(cluster, job, timeout_s=2.0, watch_timeout_s=30)  # the overall limit wins over the call's
    _assert_deleted(cluster, "slow")


@pytest.mark.parametrize("sig, exc_name", [(signal.SIGINT, "KeyboardInterrupt"),
                                            (signal.SIGTERM, "PyTorchJobCancelled")])
def test_cancel_deletes_the_job(cluster, sig, exc_name):
    from components.launcher.client import PyTorchJobCancelled

    name = f"cancel-{sig.name.lower()}"
    job = build_pytorchjob(PyTorchJobSpec(name, [WORKER, "--sleep", "60"], workers=2))
    before = signal.getsignal(signal.SIGTERM)
    # Ctrl-C is a real SIGINT, sent while a SIGINT handler that does not raise is in place (as a library
    # may leave behind: full-suite runs lost the Ctrl-C before the wait installed its own handler)
    def swallow(*_: object) -> None:
        pass

    original = signal.signal(signal.SIGINT, swallow) if sig == signal.SIGINT else None
    timer = threading.Timer(1.5, os.kill, (os.getpid(), sig))  # SIGTERM: what a cancelled KFP step receives
    timer.start()
    with pytest.raises((KeyboardInterrupt, PyTorchJobCancelled)) as info:
        _launch(cluster, job, watch_timeout_s=30)
    timer.join()
    if original is not None:
        assert signal.signal(signal.SIGINT, original) is swallow  # the wait restored the handler in place
    assert type(info.value).__name__ == exc_name
    assert signal.getsignal(signal.SIGTERM) is before
    _assert_deleted(cluster, name)


def test_server_side_admission_rejects_invalid_jobs(cluster):
    from components.launcher.client import PyTorchJobError

    job = build_pytorchjob(PyTorchJobSpec("rejected", [WORKER], workers=2))
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    with pytest.raises(PyTorchJobError, match=r"HTTP 403.*Master\]\.replicas: Forbidden: must be 1"):
        _launch(cluster, bad, validate=False)
    bad = copy.deepcopy(job)
    bad["spec"]["runPolicy"]["backoffLimit"] = "x"
    with pytest.raises(PyTorchJobError, match=r"HTTP 422.*spec\.runPolicy\.backoffLimit"):
        _launch(cluster, bad, validate=False)


# --- local launcher ------------------------------------------------------------------------------
def test_local_launcher_two_nodes_with_the_operator_env():
    lines: list[str] = []
    result = run_local_workers([WORKER], nnodes=2, log_sink=lines.append, cwd=str(ROOT), timeout_s=60)
    assert "rank 0/2 all_reduce sum=3" in lines and result.log_tail == lines
    env = _env_line(lines)
    assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "127.0.0.1"
    assert (env["WORLD_SIZE"], env["RANK"], env["PET_NNODES"], env["PET_NPROC_PER_NODE"]) == ("2", "0", "2", "auto")
    assert wait_no_children() == []


def test_local_launcher_torchrun_form_reads_pet_env():
    lines: list[str] = []
    run_local_workers([WORKER], nnodes=2, nproc_per_node=1, log_sink=lines.append, cwd=str(ROOT), timeout_s=90)
    # torchrun got --nnodes=2 --nproc-per-node=1 from $(PET_*) and set RANK/WORLD_SIZE for its child
    assert any(line.endswith("all_reduce sum=3") for line in lines), lines
    assert wait_no_children() == []


def test_local_launcher_failure_kills_the_other_nodes():
    with pytest.raises(LocalJobFailed) as info:
        run_local_workers([WORKER, "--fail-rank", "1"], nnodes=2, log_sink=None, cwd=str(ROOT), timeout_s=60)
    assert (info.value.rank, info.value.exit_code) == (1, 3)
    assert "NoSuchKey" in info.value.log_tail[-1]
    assert wait_no_children() == []


def test_local_launcher_timeout_kills_all_nodes():
    with pytest.raises(LocalJobTimeout):
        run_local_workers([WORKER, "--sleep", "60"], nnodes=2, log_sink=None, cwd=str(ROOT), timeout_s=1.0)
    assert wait_no_children() == []


@pytest.mark.parametrize("kw, match", [
    ({"nproc_per_node": 0}, "nproc_per_node must be >= 1"),
    ({"env": {"MASTER_ADDR": "10.0.0.1", "X": "1"}}, "MASTER_ADDR: set by the training operator"),
    ({"env": {"WORLD_SIZE": "8"}}, "WORLD_SIZE: set by the training operator"),
    ({"env": {"RANK": "1"}}, "RANK: set by the training operator"),
    ({"memory_limit": "2Gi", "shm_size": "4Gi"}, "larger than the memory limit"),
    ({"gpus_per_worker": 1, "cpu_per_gpu": 0}, "cpu-per-gpu must be >= 1"),
])
def test_builder_refuses_settings_that_fight_the_operator_or_the_memory_limit(kw, match):
    with pytest.raises(ValueError, match=match):
        _job(**kw)


def test_per_gpu_overrides_and_explicit_values_win():
    c = _containers(_job(gpus_per_worker=2, cpu_per_gpu=4, memory_per_gpu="10Gi"), "Worker")[0]
    assert c["resources"]["requests"]["cpu"] == "9" and c["resources"]["limits"]["memory"] == "20480Mi"
    c = _containers(_job(gpus_per_worker=2, cpu_request="3", memory_request="8Gi", shm_size=""), "Worker")[0]
    assert c["resources"]["requests"] == {"cpu": "3", "memory": "8Gi", "nvidia.com/gpu": "2"}
    assert "volumeMounts" not in c


def test_namespace_defaults_to_the_pods_own(monkeypatch, tmp_path):
    from components.launcher import pytorchjob as pj

    for var in ("OCRFLOW_NAMESPACE", "POD_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pj, "SA_NAMESPACE_FILE", tmp_path / "absent")
    assert pj.current_namespace() == "default"  # outside a cluster
    (tmp_path / "namespace").write_text("kubeflow-user-a\n")
    monkeypatch.setattr(pj, "SA_NAMESPACE_FILE", tmp_path / "namespace")
    assert pj.current_namespace() == "kubeflow-user-a"  # the KFP step pod's service-account namespace
    assert _job()["metadata"]["namespace"] == "kubeflow-user-a"
    monkeypatch.setenv("POD_NAMESPACE", "from-downward-api")
    assert pj.current_namespace() == "from-downward-api"
    monkeypatch.setenv("OCRFLOW_NAMESPACE", "chosen")
    assert _job()["metadata"]["namespace"] == "chosen"
    assert _job(namespace="explicit")["metadata"]["namespace"] == "explicit"


def test_launch_elastic_flag(capsys):
    from components.launcher.cli import main

    assert main(["-c", "cfg.yml", "--name", "el", "--elastic", "2:4", "--dry-run"]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["spec"]["elasticPolicy"] == {"minReplicas": 2, "maxReplicas": 4, "rdzvBackend": "c10d",
                                            "maxRestarts": 3}
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3  # MAX nodes, the Master included
    for bad in ("3", "0:2", "3:2", "1:1", "a:b"):
        assert main(["-c", "cfg.yml", "--name", "el", "--elastic", bad, "--dry-run"]) == 2


def test_launch_elastic_rdzv_conf_and_the_elastic_settings(capsys):
    """--rdzv-conf fills elasticPolicy.rdzvConf (the CRD's key/value list, in flag order); an elastic job
    runs one process per pod (not the operator's default nprocPerNode "auto": one per CPU core) and
    opts out of torchrun's shared TCPStore (stale keys after a re-rendezvous, see pytorchjob.py)."""
    from components.launcher.cli import main

    assert main(["-c", "cfg.yml", "--name", "el", "--elastic", "2:3", "--rdzv-conf", "last_call_timeout=3",
                 "keep_alive_interval=1", "--dry-run"]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["spec"]["elasticPolicy"]["rdzvConf"] == [{"key": "last_call_timeout", "value": "3"},
                                                        {"key": "keep_alive_interval", "value": "1"}]
    assert job["spec"]["nprocPerNode"] == "1"
    for rtype in ("Master", "Worker"):
        (c,) = _containers(job, rtype)
        assert {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"} in c["env"]
        assert c["command"][:3] == ["torchrun", "-m", "ocr_core.train"]
    assert main(["-c", "cfg.yml", "--name", "el", "--rdzv-conf", "join_timeout=60", "--dry-run"]) == 2
    assert "--rdzv-conf needs --elastic" in capsys.readouterr().err
    assert main(["-c", "cfg.yml", "--name", "el", "--elastic", "2:3", "--rdzv-conf", "oops", "--dry-run"]) == 2


def test_elastic_builder_keeps_explicit_choices():
    job = _job(elastic={"max_replicas": 3, "rdzv_conf": {"join_timeout": 60}}, gpus_per_worker=4,
               env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "0"})
    assert validate_pytorchjob(job) == []
    assert job["spec"]["elasticPolicy"]["rdzvConf"] == [{"key": "join_timeout", "value": "60"}]
    assert job["spec"]["nprocPerNode"] == "4"  # one process per GPU
    env = {e["name"]: e.get("value") for e in _containers(job)[0]["env"]}
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "0"  # the user's value wins
    plain = _containers(_job())[0]
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in {e["name"] for e in plain.get("env", [])}
    assert "nprocPerNode" not in _job()["spec"]  # non-elastic jobs are unchanged


# --- sizing follows the model type (#16) ---------------------------------------------------------
def _expected_sizing(model_type, gpus):
    """cpu/memory/shm a replica gets, worked out from resources.py's measured constants."""
    from components.launcher import resources as res

    rate, ms = {"det": (res.STUDENT_GPU_IMG_S, res.DET_DATA_MS_PER_IMAGE),
                "rec": (res.REC_GPU_IMG_S, res.REC_DATA_MS_PER_IMAGE)}[model_type]
    cores = max(2, min(res.MAX_CPU_PER_GPU, math.ceil(ms * rate / 1000)))
    mib = gpus * (res.BASE_MEMORY_MIB + cores * res.MIB_PER_WORKER)
    return str(gpus * cores + 1), f"{mib}Mi", f"{min(mib // 2, gpus * cores * res.MIB_PER_WORKER)}Mi"


def _sizing(job, rtype="Master"):
    (c,) = _containers(job, rtype)
    (vol,) = job["spec"]["pytorchReplicaSpecs"][rtype]["template"]["spec"]["volumes"]
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert req["memory"] == lim["memory"]
    return req["cpu"], lim["memory"], vol["emptyDir"]["sizeLimit"]


def test_rec_job_is_sized_from_the_rec_costs_and_det_is_unchanged():
    from components.launcher.resources import replica_resources

    rec = _job(name="ocr-rec", gpus_per_worker=1, model_type="rec")
    assert validate_pytorchjob(rec) == []
    want = _expected_sizing("rec", 1)
    r = replica_resources(1, model_type="rec")
    assert _sizing(rec) == _sizing(rec, "Worker") == want == (r.cpu, r.memory, r.shm)
    det = _job(gpus_per_worker=1)  # the default model type: det, as before
    assert validate_pytorchjob(det) == []
    assert _sizing(det) == _expected_sizing("det", 1) == _sizing(_job(gpus_per_worker=1, model_type="det"))
    assert int(want[0]) < int(_sizing(det)[0])  # a rec GPU needs far fewer loader cores than a det one
    assert _sizing(_job(gpus_per_worker=4, model_type="rec")) == _expected_sizing("rec", 4)


@pytest.mark.parametrize("bad", ["cls", "Rec", ""])
def test_unknown_model_type_is_refused(bad):
    with pytest.raises(ValueError, match=rf"model_type {bad!r} not in det/rec"):
        _job(gpus_per_worker=1, model_type=bad)
    with pytest.raises(ValueError, match="model_type"):
        _job(model_type=bad)  # refused on a CPU replica too, not only where it sizes the pod


def test_launch_model_type_flag_and_the_configs_model_type(capsys, tmp_path):
    from components.launcher.cli import main

    def dry_run(*extra):
        assert main(["--name", "sized", "--gpus-per-worker", "1", "--dry-run", *extra]) == 0
        out = capsys.readouterr()
        return _sizing(yaml.safe_load(out.out)), out.err

    rec_cfg = str(ROOT / "configs/rec/rec_icdar15_train.yml")
    det_cfg = str(ROOT / "configs/det/det_mv3_db.yml")
    assert dry_run("-c", rec_cfg) == (_expected_sizing("rec", 1), "")  # read from Architecture.model_type
    assert dry_run("-c", det_cfg)[0] == _expected_sizing("det", 1)
    assert dry_run("-c", det_cfg, "-o", "Architecture.model_type=rec")[0] == _expected_sizing("rec", 1)
    assert dry_run("-c", rec_cfg, "--model-type", "det")[0] == _expected_sizing("det", 1)  # the flag wins
    openocr = tmp_path / "openocr.yml"  # OpenOCR keeps it under Global
    openocr.write_text("Global:\n  model_type: rec\n  output_dir: ./out\nArchitecture:\n  algorithm: SVTR\n")
    assert dry_run("-c", str(openocr))[0] == _expected_sizing("rec", 1)
    # a config only inside the image: det, said on stderr; --model-type sizes it
    sizing, err = dry_run("-c", "configs/only/in/the/image.yml")
    assert sizing == _expected_sizing("det", 1) and "--model-type" in err
    assert dry_run("-c", "configs/only/in/the/image.yml", "--model-type", "rec") == (_expected_sizing("rec", 1), "")
    with pytest.raises(SystemExit):
        main(["-c", rec_cfg, "--name", "sized", "--model-type", "cls", "--dry-run"])
    assert "invalid choice: 'cls'" in capsys.readouterr().err
    other = tmp_path / "cls.yml"
    other.write_text("Architecture:\n  model_type: cls\n")
    assert main(["-c", str(other), "--name", "sized", "--gpus-per-worker", "1", "--dry-run"]) == 2
    assert "model_type 'cls' not in det/rec" in capsys.readouterr().err
