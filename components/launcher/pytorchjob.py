"""Build a Kubeflow ``PyTorchJob`` (``kubeflow.org/v1``) for an OCRFlow training step.

The job is Master (1 replica) + Worker (N-1 replicas); every replica runs one container named
``pytorch`` (the webhook requires that name). What the training operator injects into it
(kubeflow/trainer@v1.9.4 ``pkg/controller.v1/pytorch/envvar.go``, ``master.go``):

* always ``PYTHONUNBUFFERED=1``;
* ``MASTER_ADDR``/``PET_MASTER_ADDR`` = ``<job>-master-0``, ``MASTER_PORT``/``PET_MASTER_PORT`` =
  the container port named ``pytorchjob-port`` (defaulted to 23456);
* ``WORLD_SIZE`` = replicas x nprocPerNode (1 when not an int), ``RANK`` = ``PET_NODE_RANK`` =
  replica index (+1 for Workers);
* ``PET_NPROC_PER_NODE`` = ``nprocPerNode``. Note: the controller defaults an unset
  ``nprocPerNode`` to ``"auto"`` before generating env (``pytorch_defaults.go``), and torchrun's
  ``auto`` means one process per CPU core on a CPU node. So we always set it when using torchrun;
* ``PET_NNODES`` = replicas; with an elasticPolicy (``elastic.go``) ``min:max`` instead, plus
  ``PET_RDZV_ENDPOINT`` = ``<job>-worker-0:<pytorchjob-port>``, ``PET_RDZV_BACKEND`` (c10d), and
  ``PET_MAX_RESTARTS``/``PET_RDZV_ID``/``PET_RDZV_CONF`` when the policy sets them.

Two worker command forms:

* ``nproc_per_node=None``: ``python <program>``: the pod *is* one rank and reads ``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (``init_method="env://"``).
* ``nproc_per_node=K``: ``torchrun --nnodes=$(PET_NNODES) --nproc-per-node=$(PET_NPROC_PER_NODE)
  --node-rank=$(PET_NODE_RANK) --master-addr=$(PET_MASTER_ADDR) --master-port=$(PET_MASTER_PORT)
  <program>``. The kubelet expands ``$(VAR)`` from the container env; torchrun would also read
  each ``PET_<FLAG>`` variable as that flag's default, which is what the elastic form relies on
  (bare ``torchrun <program>``, because optional ``PET_RDZV_ID``/``PET_MAX_RESTARTS`` may be unset
  and an undefined ``$(VAR)`` stays literal).

Elastic jobs keep the Master (``components.launcher.client`` streams its log, and the operator's
success rule with a Master is "the Master exited 0"): every replica runs the same bare torchrun
and the c10d rendezvous, hosted by ``<job>-worker-0``'s agent, assigns the ranks. Two settings are
added for them: ``nprocPerNode`` defaults to ``"1"`` (the GPU count with ``gpus_per_worker > 1``),
since the operator's default ``auto`` makes torchrun start one process per CPU core on a CPU node;
and ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, because with the agent's shared TCPStore (the default
since torch 2.4) a worker group restarted after a membership change can read the previous group's
keys and fail ``init_process_group`` (gloo ``connectFullMesh``: connection refused; pytorch/pytorch
issue 135712; measured with torch 2.13 in ``tests/k8s/test_elastic.py``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

# The one image every component and PyTorchJob replica runs; components' base_image reuses it.
DEFAULT_IMAGE = "ghcr.io/ocrflow/ocrflow:0.1.0"

GROUP = "kubeflow.org"
VERSION = "v1"
KIND = "PyTorchJob"
PLURAL = "pytorchjobs"
CONTAINER_NAME = "pytorch"  # required by the webhook
PORT_NAME = "pytorchjob-port"  # the operator reads MASTER_PORT from this port
DEFAULT_MASTER_PORT = 23456
METRICS_PORT_NAME = "metrics"  # scraped by manifests/monitoring/podmonitor.yaml
DEFAULT_METRICS_PORT = 9400
# Training replicas run as a service account with no RBAC and no token mounted
# (manifests/base/serviceaccount.yaml): a compromised training pod cannot call the API server.
DEFAULT_SERVICE_ACCOUNT = "ocrflow-replica"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The training operator sets these in every replica; a hand-set value would fight it.
OPERATOR_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                "PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE", "PET_MASTER_ADDR", "PET_MASTER_PORT")
# torchrun's opt-out of the agent-shared TCPStore, set in elastic jobs (see the module docstring)
SHARED_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"
DEFAULT_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "accesskey", "AWS_SECRET_ACCESS_KEY": "secretkey"}
COMMON_LABELS = {"app.kubernetes.io/name": "ocrflow-trainer", "app.kubernetes.io/part-of": "ocrflow"}
NON_ROOT_UID = 1000  # the `ocrflow` user of the Dockerfile

_TORCHRUN_STATIC = [
    "torchrun",
    "--nnodes=$(PET_NNODES)",
    "--nproc-per-node=$(PET_NPROC_PER_NODE)",
    "--node-rank=$(PET_NODE_RANK)",
    "--master-addr=$(PET_MASTER_ADDR)",
    "--master-port=$(PET_MASTER_PORT)",
]
_ELASTIC_KEYS = {
    "min_replicas": "minReplicas", "max_replicas": "maxReplicas", "max_restarts": "maxRestarts",
    "rdzv_backend": "rdzvBackend", "rdzv_host": "rdzvHost", "rdzv_port": "rdzvPort",
    "rdzv_id": "rdzvId", "rdzv_conf": "rdzvConf", "standalone": "standalone", "metrics": "metrics",
}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def current_namespace() -> str:
    """The namespace jobs go to by default: where this process's own pod runs.

    ``OCRFLOW_NAMESPACE`` (an explicit choice), else ``POD_NAMESPACE`` (the downward API), else the
    pod's service-account namespace file (every pod with a token has it, KFP step pods included),
    else ``default`` (outside a cluster).
    """
    for var in ("OCRFLOW_NAMESPACE", "POD_NAMESPACE"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return SA_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


def train_program(config: str, overrides: Sequence[str] = ()) -> list[str]:
    """Python program args for a training rank: ``-m ocr_core.train --resume -c CONFIG [-o k=v ...]``.

    ``--resume``: a replica the operator restarts (a lost node, exit 143 after SIGTERM) continues from
    ``latest.pt`` in its ``save_model_dir`` instead of refusing a directory that holds checkpoints;
    the first attempt, with no ``latest.pt`` yet, starts fresh.
    """
    prog = ["-m", "ocr_core.train", "--resume", "-c", config]
    if overrides:
        prog += ["-o", *overrides]
    return prog


def worker_command(program: Sequence[str], nproc_per_node: int | None, elastic: bool = False) -> list[str]:
    """The container command for one replica (see the module docstring for the two forms)."""
    if not program:
        raise ValueError("program must not be empty (e.g. ['-m', 'ocr_core.train', '-c', 'cfg.yml'])")
    if nproc_per_node is None and not elastic:
        return ["python", *program]
    if elastic:
        return ["torchrun", *program]
    return [*_TORCHRUN_STATIC, *program]


def _elastic_policy(elastic: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in elastic.items():
        camel = _ELASTIC_KEYS.get(key, key)
        if camel not in _ELASTIC_KEYS.values():
            raise ValueError(f"unknown elastic policy key {key!r}; known: {sorted(_ELASTIC_KEYS)}")
        if camel == "rdzvConf" and isinstance(value, Mapping):  # {k: v} -> the CRD's [{key, value}]
            value = [{"key": str(k), "value": str(v)} for k, v in value.items()]
        out[camel] = value
    return out


@dataclass
class PyTorchJobSpec:
    """Everything a training PyTorchJob is built from (:func:`build_pytorchjob`).

    ``ocrflow launch`` maps its flags onto these fields (its defaults are these defaults) and the
    pipeline's training step fills the ones it needs.

    Attributes:
        name: Job name (DNS-1035 label: lowercase, digits, '-', starts with a letter).
        program: The Python program one rank runs, without the interpreter, e.g.
            ``train_program("cfg.yml")`` or ``["script.py", "--flag"]``.
        workers: Total replicas (nodes) including the Master; Worker replicas = workers - 1.
        nproc_per_node: Processes per replica through torchrun; None runs ``python`` directly
            (one rank per pod). With ``gpus_per_worker > 1`` it defaults to the GPU count.
        gpus_per_worker: ``nvidia.com/gpu`` per replica (requests == limits).
        secret_name: Object-store credentials Secret (KFP's keys ``accesskey``/``secretkey``).
        secret_keys: env name -> Secret key (``secretKeyRef``); None loads the whole Secret
            with ``envFrom`` (its keys must then be env names).
        namespace: Default: where this pod runs (:func:`current_namespace`).
        cpu_request, memory_request, memory_limit, shm_size: None sizes them from the GPUs
            (:func:`~components.launcher.resources.replica_resources`: measured data cost per
            image x a GPU's training rate); a CPU replica gets 1 core, 4Gi and a 1Gi ``/dev/shm``.
            ``shm_size=""`` mounts none. ``/dev/shm`` is memory and never exceeds the limit.
        cpu_per_gpu, memory_per_gpu: Override the per-GPU sizing.
        model_type: ``det`` or ``rec`` (:data:`~components.launcher.resources.MODEL_TYPES`): the
            training config's ``Architecture.model_type``, whose measured data cost per image and
            GPU rate size the replica (a rec GPU needs ~5 cores, a det one the 12-core cap).
        elastic: ``elasticPolicy`` (snake_case or camelCase keys; ``rdzv_conf`` may be a mapping);
            needs ``workers >= 2``. ``workers`` is then the maximum, Master included; see the
            module docstring for the two settings an elastic job gets.
        labels: Extra labels on the job and its pods (e.g. ``pipelines.kubeflow.org/run_id``).
    """

    name: str
    program: Sequence[str]
    namespace: str = field(default_factory=current_namespace)
    image: str = DEFAULT_IMAGE
    workers: int = 2
    nproc_per_node: int | None = None
    gpus_per_worker: int = 0
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret_name: str | None = None
    secret_keys: Mapping[str, str] | None = field(default_factory=lambda: dict(DEFAULT_SECRET_KEYS))
    shm_size: str | None = None
    cpu_per_gpu: int | None = None
    memory_per_gpu: str | None = None
    model_type: str = "det"
    restart_policy: str = "OnFailure"
    backoff_limit: int | None = 3
    clean_pod_policy: str | None = "None"
    ttl_seconds_after_finished: int | None = 86400
    active_deadline_seconds: int | None = None
    elastic: Mapping[str, Any] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = DEFAULT_SERVICE_ACCOUNT
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    priority_class: str | None = None
    image_pull_policy: str = "IfNotPresent"
    master_port: int = DEFAULT_MASTER_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT
    run_as_user: int = NON_ROOT_UID


def build_pytorchjob(spec: PyTorchJobSpec) -> dict[str, Any]:
    """Return the PyTorchJob manifest ``spec`` describes (a plain dict, ready for ``CustomObjectsApi``).

    Raises:
        ValueError: an invalid name, replica count, elastic policy, restart policy or model type.
    """
    from components.launcher.resources import MODEL_TYPES

    if not _DNS1035.match(spec.name) or len(spec.name) > 63:
        raise ValueError(f"job name {spec.name!r} is not a DNS-1035 label")
    if spec.workers < 1:
        raise ValueError("workers must be >= 1 (the Master counts as one)")
    if spec.elastic is not None and spec.workers < 2:
        raise ValueError("an elastic policy needs Worker replicas (workers >= 2)")
    if spec.restart_policy not in ("OnFailure", "Never", "Always", "ExitCode"):
        raise ValueError(f"restart_policy {spec.restart_policy!r} not in OnFailure/Never/Always/ExitCode")
    if spec.model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {spec.model_type!r} not in {'/'.join(MODEL_TYPES)} (the training config's "
                         "Architecture.model_type; it sizes the pod's CPU and memory)")
    if spec.nproc_per_node is not None and spec.nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1 (or unset), got {spec.nproc_per_node}")
    clash = sorted(set(spec.env or {}) & set(OPERATOR_ENV))
    if clash:
        raise ValueError(f"env {', '.join(clash)}: set by the training operator in every replica; do not set it")
    spec = _sized(spec)
    nproc_per_node = spec.nproc_per_node
    if nproc_per_node is None and spec.gpus_per_worker > 1:
        nproc_per_node = spec.gpus_per_worker
    if nproc_per_node is None and spec.elastic is not None:
        nproc_per_node = 1  # not the operator's default "auto": one process per CPU core

    all_labels = {**COMMON_LABELS, **(spec.labels or {})}
    # Istio sidecars never exit, which would keep finished replicas Running forever.
    pod_annotations = {"sidecar.istio.io/inject": "false", **(spec.annotations or {})}
    pod_spec = _pod_spec(spec, _container(spec, nproc_per_node))

    def replica(n: int) -> dict[str, Any]:
        return {
            "replicas": n,
            "restartPolicy": spec.restart_policy,
            "template": {
                "metadata": {"labels": dict(all_labels), "annotations": dict(pod_annotations)},
                "spec": copy.deepcopy(pod_spec),
            },
        }

    replica_specs = {"Master": replica(1)}
    if spec.workers > 1:
        replica_specs["Worker"] = replica(spec.workers - 1)

    job_spec: dict[str, Any] = {}
    run_policy = _run_policy(spec)
    if run_policy:
        job_spec["runPolicy"] = run_policy
    if spec.elastic is not None:
        job_spec["elasticPolicy"] = _elastic_policy(spec.elastic)
    if nproc_per_node is not None:
        job_spec["nprocPerNode"] = str(nproc_per_node)  # a string in the CRD (int, auto, cpu, gpu)
    job_spec["pytorchReplicaSpecs"] = replica_specs

    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace, "labels": dict(all_labels)}
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": metadata, "spec": job_spec}


def _container(spec: PyTorchJobSpec, nproc_per_node: int | None) -> dict[str, Any]:
    """The one ``pytorch`` container: command, env (+ the Secret's keys), ports, resources, security."""
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": worker_command(spec.program, nproc_per_node, spec.elastic is not None),
    }
    env = dict(spec.env or {})
    if spec.elastic is not None:
        env.setdefault(SHARED_STORE_ENV, "1")  # see the module docstring
    env_list = [{"name": k, "value": str(v)} for k, v in env.items()]
    if spec.secret_name and spec.secret_keys is not None:
        env_list += [{"name": var, "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key}}}
                     for var, key in spec.secret_keys.items()]
    if env_list:
        container["env"] = env_list
    if spec.secret_name and spec.secret_keys is None:
        container["envFrom"] = [{"secretRef": {"name": spec.secret_name}}]
    ports = [{"name": PORT_NAME, "containerPort": spec.master_port, "protocol": "TCP"}]
    if spec.metrics_port is not None:
        ports.append({"name": METRICS_PORT_NAME, "containerPort": spec.metrics_port, "protocol": "TCP"})
    container["ports"] = ports
    container["resources"] = _resources(spec.cpu_request, spec.cpu_limit, spec.memory_request, spec.memory_limit,
                                        spec.gpus_per_worker)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": False,  # torch/triton caches write under $HOME
    }
    if spec.shm_size:
        container["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    return container


def _pod_spec(spec: PyTorchJobSpec, container: dict[str, Any]) -> dict[str, Any]:
    """Scheduling, the non-root security context, the container and the ``/dev/shm`` volume."""
    pod_spec: dict[str, Any] = {}
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    pod_spec["automountServiceAccountToken"] = False  # training needs no API access
    if spec.priority_class:
        pod_spec["priorityClassName"] = spec.priority_class
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    uid = spec.run_as_user
    pod_spec["securityContext"] = {
        "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_spec["containers"] = [container]
    if spec.shm_size:
        pod_spec["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    return pod_spec


def _sized(spec: PyTorchJobSpec) -> PyTorchJobSpec:
    """``spec`` with unset cpu/memory/shm filled from the GPUs; a /dev/shm above the limit refused."""
    from components.launcher.resources import mebibytes, replica_resources

    if spec.gpus_per_worker > 0:
        r = replica_resources(spec.gpus_per_worker, model_type=spec.model_type, cpu_per_gpu=spec.cpu_per_gpu,
                              memory_per_gpu=spec.memory_per_gpu)
        auto = {"cpu": r.cpu, "memory": r.memory, "shm": r.shm}
    else:
        auto = {"cpu": "1", "memory": "4Gi", "shm": "1Gi"}
    memory_limit = spec.memory_limit or spec.memory_request or auto["memory"]
    spec = replace(spec, cpu_request=spec.cpu_request or auto["cpu"], memory_request=spec.memory_request or
                   auto["memory"], memory_limit=memory_limit,
                   shm_size=auto["shm"] if spec.shm_size is None else spec.shm_size)
    if spec.shm_size and mebibytes(spec.shm_size) > mebibytes(memory_limit):
        raise ValueError(f"/dev/shm {spec.shm_size} is larger than the memory limit {memory_limit}: the volume is "
                         "memory-backed and counts against the limit")
    return spec


def _run_policy(spec: PyTorchJobSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (("cleanPodPolicy", spec.clean_pod_policy), ("backoffLimit", spec.backoff_limit),
                       ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
                       ("activeDeadlineSeconds", spec.active_deadline_seconds)):
        if value is not None:
            out[key] = value
    return out


def _resources(cpu_req: str | None, cpu_lim: str | None, mem_req: str | None, mem_lim: str | None,
               gpus: int) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpu_req:
        requests["cpu"] = str(cpu_req)
    if mem_req:
        requests["memory"] = str(mem_req)
    if cpu_lim:
        limits["cpu"] = str(cpu_lim)
    if mem_lim:
        limits["memory"] = str(mem_lim)
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def to_yaml(job: Mapping[str, Any]) -> str:
    """Stable YAML for ``--dry-run`` and golden files (key order as built)."""
    return yaml.safe_dump(dict(job), sort_keys=False, default_flow_style=False, width=120)
